"""The law as data: legal parameters (base salary, regional minimum wages, contribution rates,
the cap) with their effective dates. Imported by the rules and by the records, imports neither."""
