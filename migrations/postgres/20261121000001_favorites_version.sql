-- favorites_version: how many changes the user's favorites have seen. Every insert, update and
-- delete of a favorite bumps it in the same statement, so versions follow commit order (the
-- bump takes the user's row lock until commit) and a snapshot that reads version v sees exactly
-- the changes 1..v. The cache labels what it holds with this number and a cached list is served
-- only when its version is the database's current one: see docs/CACHE.md.
alter table users add column favorites_version bigint not null default 0;
