-- Lifecycle, recall and fixity tables (hierarchical storage). Filled by pacs_lifecycle,
-- pacs_recall and pacs_fixity.
SELECT 1;
