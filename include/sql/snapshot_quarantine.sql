SELECT * FROM quarantine ORDER BY quarantined_at, quarantine_id
