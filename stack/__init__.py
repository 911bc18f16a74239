"""The production topology, natively: ``make stack-test`` (see :mod:`stack.stack_test`).

- :mod:`stack.stack_test` — the scenario: start the stack, run every DAG through the scheduler
  over the REST API, check the end state and where each task ran, stop everything;
- :mod:`stack.services` — PostgreSQL, Redis, moto's S3 server and the Airflow processes;
- :mod:`stack.api` — the few calls of Airflow's REST API (``/api/v2``) it makes;
- :mod:`stack.hostname` — the host name each Airflow component reports (``[core] hostname_callable``).
"""
