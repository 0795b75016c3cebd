-- favorite_search in parts, walked through an index that holds them (docs/FILTERS.md, "Postgres").
--
-- A `q` found in 1% of a list walks about 10 100 rows of favorite_search for a page of 100.
-- Until this migration each of them was read from the table to compare its text, with LIKE.
-- Now:
-- - favorite_search_walk_idx holds the text (INCLUDE: nothing sorts by it), so the walk is an
--   index-only scan: the table is read only on pages the visibility map does not yet know to be
--   all-visible (rows written since autovacuum last passed);
-- - the walk compares with strpos, a byte search, and runs the LIKE only on the rows strpos
--   kept (adapters/sql/postgres.rs, PG_FILTER).
-- At 1 000 000 favorites a `q` page at 1% executes in 1.93 ms instead of 2.49 (docs/FILTERS.md),
-- and costs the function 1.93x the plain page instead of 2.16x (docs/BENCHMARKS.md).
--
-- Parts: a btree entry holds at most 2 704 bytes, and a search text may be 2 201 characters of
-- up to 4 bytes each (name, U+001F, description). So each favorite's text is stored in parts
-- of at most 500 characters (2 000 bytes), part k from character 300·k + 1: each part overlaps
-- the one before by 200 characters, twice the longest search text (SEARCH_MAX_CHARS, 100; twice
-- because lower() may lengthen a letter, as ICU's does 'İ'). Any text a search can look for
-- therefore lies whole in one part. A text of at most 500 characters, nearly every favorite's,
-- is one part. A search reads each favorite once (`distinct on`) whichever parts match.
--
-- The trigram index is on lower(text), which is text itself (the parts are lower-cased when
-- written): the planner prices `lower(text) like …` as two operations, as much as
-- `strpos(…) > 0`, so it keeps the order the query writes them in and the LIKE runs second.
-- Over `text` itself the LIKE would be priced lower and run first, on every row walked.
--
-- The table is rebuilt from favorites, as 20261207000001 built it: about 30 s per million
-- favorites, during which writes to favorites and filtered lists wait (unfiltered lists and
-- single favorites do not). The code that reads parts reads the table before them as well (it
-- names no part), so the usual order holds (README, "Deploy, then migrate").
drop trigger favorite_search_row on favorites;
drop function favorite_search_row();
drop table favorite_search;

create table favorite_search (
    user_id uuid not null,
    id text collate "C" not null,
    part smallint not null,
    created_at timestamptz not null,
    type text not null,
    text text not null,
    primary key (user_id, id, part),
    foreign key (user_id, id) references favorites (user_id, id) on delete cascade
);

-- The parts of a search text (see the header): 500 characters, each from 300 past the last.
create function favorite_search_parts(whole text) returns table (part smallint, chunk text)
    language sql immutable parallel safe
begin atomic
    select k::smallint, substr(whole, k * 300 + 1, 500)
      from generate_series(0, greatest(0, (char_length(whole) - 201) / 300)) as k;
end;

-- One part, nearly always, is a plain insert: through favorite_search_parts (a set-returning
-- call for every row written) writing a favorite took twice as long (docs/FILTERS.md).
create function favorite_search_row() returns trigger language plpgsql as $$
declare
    whole text := favorite_search_text(new.asset);
begin
    if tg_op = 'UPDATE' then
        delete from favorite_search where user_id = old.user_id and id = old.id;
    end if;
    if char_length(whole) <= 500 then
        insert into favorite_search (user_id, id, part, created_at, type, text)
        values (new.user_id, new.id, 0, new.created_at, new.asset->>'type', whole);
    else
        insert into favorite_search (user_id, id, part, created_at, type, text)
        select new.user_id, new.id, p.part, new.created_at, new.asset->>'type', p.chunk
          from favorite_search_parts(whole) as p;
    end if;
    return null;
end
$$;

create trigger favorite_search_row after insert or update of asset, created_at on favorites
    for each row execute function favorite_search_row();

-- In listing order, so that a user's walk reads neighbouring pages.
insert into favorite_search (user_id, id, part, created_at, type, text)
select f.user_id, f.id, p.part, f.created_at, f.asset->>'type', p.chunk
  from favorites as f, favorite_search_parts(favorite_search_text(f.asset)) as p
 order by f.user_id, f.created_at, f.id, p.part;

-- favorite_search_walk_idx: the walk of a `q`, or of several types (both compared in the index).
-- favorite_search_type_idx: one type, a range scan in listing order.
-- favorite_search_text_idx: trigrams, for a text so rare that walking would read the whole
--     list. Its statistics target is 1 000, as the column's was (20261207000001): the planner
--     estimates how many favorites hold a text from this histogram, and with the default a
--     text in 1% of a list is often estimated at ~100 rows and fetched through this index.
create index favorite_search_walk_idx on favorite_search (user_id, created_at desc, id desc) include (type, text);
create index favorite_search_type_idx on favorite_search (user_id, type, created_at desc, id desc);
create index favorite_search_text_idx on favorite_search using gin (lower(text) gin_trgm_ops);
alter index favorite_search_text_idx alter column 1 set statistics 1000;

analyze favorite_search;
