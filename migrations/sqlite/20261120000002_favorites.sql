-- Favorites (SQLite dialect of migrations/postgres; same key, same listing index).
--
-- asset: JSON text (SQLite has no JSONB column type worth the name; json_* functions read it).
-- created_at/updated_at: ISO 8601 UTC text with six fractional digits, the same shape the
--     Postgres dialect prints; SQLite's clock has milliseconds, so the last three digits are 0.
--     Fixed-width text sorts like the time it spells, which keyset paging relies on.
-- id collate binary (SQLite's default): byte order, as "C" in Postgres.
create table favorites (
    user_id text not null references users (id) on delete cascade,
    id text not null check (length(id) between 1 and 128),
    asset text not null check (json_valid(asset) and json_type(asset) = 'object'),
    created_at text not null default (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    updated_at text not null default (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    primary key (user_id, id)
) without rowid;

create index favorites_listing_idx on favorites (user_id, created_at desc, id desc);
