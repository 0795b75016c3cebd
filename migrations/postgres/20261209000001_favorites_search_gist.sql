-- A search without a type walks a GiST index of favorites, newest first, that skips what cannot
-- match (docs/FILTERS.md, "Postgres").
--
-- A `q` found in 1% of a list walked about 10 100 entries of favorite_search_walk_idx for a page
-- of 100: about 0.9 ms of the statement's 1.8, whatever the comparison cost, and 1.9-2.0x the
-- plain page in the function (docs/BENCHMARKS.md). This index holds, per favorite, its user,
-- its created_at and the trigrams of its search text (favorite_search_text, as favorite_search
-- stores it), and each inner entry the union of what lies below it: ordered by the distance of
-- created_at from a later instant (`created_at <-> …`, btree_gist), a scan returns the matching
-- favorites newest first and leaves out every subtree whose trigrams cannot hold the text.
--
-- - One entry per favorite, whatever the length of its text: a leaf holds the text's trigrams,
--   or a signature of 256 bytes when they take more room. No parts, so no favorite twice.
-- - The scan reads the favorites themselves to recheck the text (the trigrams are lossy): a
--   search's page comes from `favorites` directly, without a join.
-- - A search with a type does not use it: a subtree holding both types passes both conditions
--   separately, so a common text of a rare type visits the whole list. It walks
--   favorite_search as before.
-- - Statistics target 1 000 on the text, as for favorite_search (20261208000001): the planner
--   turns to a bitmap scan and a sort when it thinks a text is rare, and with the default
--   target a text in 1% of a list is often estimated at ~100 rows.
--
-- Costs, 1 000 000 favorites: about 430 MB, built in 19-25 s on this machine, during which writes
-- to favorites wait (reads do not); about 18 µs more to insert a favorite (20 000 in one
-- statement: 1.20-1.32 s against 0.87-0.94 s). btree_gist is a trusted extension (Postgres 13+),
-- available on RDS. The code that uses this index runs without it, only slower: deploy before
-- or after the migration.
create extension if not exists btree_gist;

create index favorites_search_idx on favorites
    using gist (user_id, created_at, favorite_search_text(asset) gist_trgm_ops(siglen = 256));
alter index favorites_search_idx alter column 3 set statistics 1000;

analyze favorites;
