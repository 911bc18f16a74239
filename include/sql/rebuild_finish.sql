-- pacs rebuild: every study is touched; then the exact aggregates (aggregates.sql) and tier
-- states (lifecycle_study_state.sql) follow, run by pacs.catalogue.rebuild.
CREATE OR REPLACE TEMP TABLE touched_studies AS SELECT study_instance_uid FROM study;
