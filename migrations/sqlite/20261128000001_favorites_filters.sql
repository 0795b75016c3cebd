-- The filters of GET /favorites (SQLite dialect of migrations/postgres; docs/FILTERS.md).
--
-- favorites_type_idx: the listing index with the asset's type after the user, spelled as the
--     listing query spells it (adapters/sql/sqlite.rs, SQLITE_FILTER): a list of one type is a
--     range scan in listing order. `q` has no index here (SQLite has no trigram index outside
--     FTS5): it is a filter over favorites_listing_idx (or this one, with a type), which reads
--     the user's rows in listing order until the page is full.
create index favorites_type_idx on favorites (user_id, json_extract(asset, '$.type'), created_at desc, id desc);
