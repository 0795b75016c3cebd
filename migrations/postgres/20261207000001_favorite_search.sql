-- favorite_search: what the filters of GET /favorites read (docs/FILTERS.md, "Postgres").
--
-- One narrow row per favorite: its listing position, its type, and the text `q` looks in,
-- lower-cased once when written (name U+001F description; neither may contain U+001F, so no
-- match spans both). A filtered list walks this table in listing order until its page is full,
-- then reads the page's favorites by primary key. Before, a `q` found in 1% of a list walked
-- favorites itself: 10 100 wide rows, each JSON-decoded and lower-cased on the way (10-17 ms
-- at 1 000 000 favorites); here the same walk reads ~100 rows per page and compares bytes
-- (2.5-3 ms). `text like lower($n)` is what `asset ILIKE $n` was: Postgres folds both sides
-- with lower() for ILIKE in a multi-byte encoding.
--
-- Kept by a trigger, in the writing transaction, whatever writes favorites (the functions, the
-- benchmarks' seeding, a hand edit); removed with its favorite by the foreign key. `created_at`
-- never changes, but is copied on every write so that no state can disagree.
--
-- favorite_search_listing_idx: the walk of a `q` (or several types that are most of the list).
-- favorite_search_type_idx: one type, a range scan in listing order (was favorites_type_idx).
-- favorite_search_text_idx: trigrams, for a text so rare that walking would read the whole list
--     (was favorites_search_idx). Its column's statistics target is 1 000, as the expression's
--     was (20261206000001): with the default, a text in 1% of a list often matches no histogram
--     bound, is estimated at ~100 rows, and all its matches are fetched and sorted.
--
-- Costs: every write of a favorite writes this row too (four index entries, where favorites
-- loses two); the table is about a quarter of favorites' size. Building it here reads favorites
-- once; the trigger's creation blocks writes to favorites (not reads) until this commits:
-- about 22 s per million favorites (the index builds of 20261128000001 blocked them too). The
-- code that reads this table cannot run without it: deploy this migration with the code before
-- it first, then the code (README, "Deploy, then migrate"), or filtered lists fail until it
-- has run.
create table favorite_search (
    user_id uuid not null,
    id text collate "C" not null,
    created_at timestamptz not null,
    type text not null,
    text text not null,
    primary key (user_id, id),
    foreign key (user_id, id) references favorites (user_id, id) on delete cascade
);

-- The text `q` looks in, from a stored asset: the trigger and the backfill below both use it.
create function favorite_search_text(asset jsonb) returns text
    language sql immutable parallel safe
    return lower(coalesce(asset->>'name', '') || E'\x1f' || coalesce(asset->>'description', ''));

create function favorite_search_row() returns trigger language plpgsql as $$
begin
    insert into favorite_search (user_id, id, created_at, type, text)
    values (new.user_id, new.id, new.created_at, new.asset->>'type', favorite_search_text(new.asset))
    on conflict (user_id, id) do update
        set created_at = excluded.created_at, type = excluded.type, text = excluded.text;
    return null;
end
$$;

create trigger favorite_search_row after insert or update of asset, created_at on favorites
    for each row execute function favorite_search_row();

-- In listing order, so that a user's walk reads neighbouring pages, as it will for rows the
-- trigger appends as favorites are added.
insert into favorite_search (user_id, id, created_at, type, text)
select user_id, id, created_at, asset->>'type', favorite_search_text(asset)
  from favorites
 order by user_id, created_at, id;

create index favorite_search_listing_idx on favorite_search (user_id, created_at desc, id desc);
create index favorite_search_type_idx on favorite_search (user_id, type, created_at desc, id desc);
create index favorite_search_text_idx on favorite_search using gin (text gin_trgm_ops);
alter table favorite_search alter column text set statistics 1000;

drop index favorites_type_idx;
drop index favorites_search_idx;

analyze favorite_search;
