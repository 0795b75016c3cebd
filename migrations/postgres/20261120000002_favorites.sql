-- Favorites: one row per (user, asset id). Ids are unique per user, not globally, so the key
-- is (user_id, id) and a second favorite with the same id is refused by the key itself.
--
-- id collate "C": byte order, so the listing order and keyset comparisons do not depend on
--     the server's locale, and the btree compares bytes instead of calling ICU/glibc.
-- asset: the validated asset without its id (type, name, description and the fields of its
--     type) as JSONB. The GIN index (jsonb_path_ops, smaller and faster for @> than the
--     default opclass) serves containment queries such as asset @> '{"type":"chart"}'.
-- created_at/updated_at: set by the database clock, the one clock every function shares.
-- on delete cascade: deleting a user deletes their favorites; nothing is left orphaned.
create table favorites (
    user_id uuid not null references users (id) on delete cascade,
    id text collate "C" not null check (length(id) between 1 and 128),
    asset jsonb not null check (jsonb_typeof(asset) = 'object'),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (user_id, id)
);

-- The listing order: newest first, ties broken by id. Keyset paging ("after this position")
-- is an index range scan, so page 1 000 costs what page 1 costs.
create index favorites_listing_idx on favorites (user_id, created_at desc, id desc);

create index favorites_asset_idx on favorites using gin (asset jsonb_path_ops);
