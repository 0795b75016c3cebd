-- The filters of GET /favorites: `type` and `q` (issue 17). docs/FILTERS.md shows the plans.
--
-- favorites_type_idx: the listing index with the asset's type after the user, so that a list
--     of one type is a range scan in listing order, as the unfiltered list is: a page costs the
--     same whether 1% or all of a user's favorites are of that type. The expression is spelled
--     as the listing query spells it (adapters/sql/postgres.rs, PG_FILTER), or the index is not
--     used. Several types are served by favorites_listing_idx with a filter when they are most
--     of the list, and by this index and a sort otherwise: the planner decides.
-- favorites_search_idx: trigrams of name and description (joined by U+001F, which neither may
--     contain, so that no match spans both), so that `q` (a case-insensitive substring, ILIKE)
--     finds the few rows that contain a rare text without reading the user's whole list.
--     pg_trgm is a trusted extension (Postgres 13+) and available on RDS; it is not keyed by
--     user: a GIN key on the user would match every row of a large list for every search.
-- favorites_asset_idx (GIN, jsonb_path_ops) served no query (nothing asks `asset @> …`), while
--     every insert and update paid for it: dropped. The type filter uses the btree above, which
--     also gives the listing order.
create index favorites_type_idx on favorites (user_id, (asset->>'type'), created_at desc, id desc);

create extension if not exists pg_trgm;
create index favorites_search_idx on favorites
    using gin (((asset->>'name') || E'\x1f' || (asset->>'description')) gin_trgm_ops);

drop index favorites_asset_idx;
