-- The periodic sweep: removes up to SWEEP_LIMIT expired sessions (their
-- bytes and per-source counts returned), announcing each. Every instance
-- runs it; they only share the work.
return sweep(SWEEP_LIMIT)
