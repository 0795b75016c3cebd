-- favorites_version (SQLite dialect of migrations/postgres): bumped in the same transaction as
-- every change to the user's favorites; the cache labels what it holds with it.
alter table users add column favorites_version integer not null default 0;
