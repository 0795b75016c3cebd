-- `q` plans from a statistics sample ten times larger (docs/FILTERS.md, "Choosing the plan").
--
-- The planner estimates how many favorites contain a text by matching it against the
-- histogram ANALYZE keeps of favorites_search_idx's expression (name U+001F description). With
-- the default target (100 bounds), a text found in 1% of a list matches one interior bound or
-- none, depending on the sample: with none, the estimate falls to its floor (~100 rows), and
-- the planner fetches every match through the trigram index and sorts them (80-120 ms at 1% of
-- 1 000 000) instead of walking favorites_listing_idx until the page is full (10-15 ms). With
-- 1 000 bounds the common text is seen, sample after sample, and a rare one still goes to the
-- trigram index. No rewrite, no lock beyond the ALTER's; ANALYZE of favorites takes longer
-- (about 5 s instead of 1 s at 1 000 000 rows, run by autovacuum).
alter index favorites_search_idx alter column 1 set statistics 1000;
analyze favorites;
