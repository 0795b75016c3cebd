-- Users of the service (SQLite dialect of migrations/postgres; same shape, same constraints).
--
-- id: UUIDv7 text. created_at: ISO 8601 text in UTC with milliseconds, which sorts like time.
-- The unique index on lower(email) mirrors Postgres; the application lower-cases emails
-- (Unicode-aware) before storing, because SQLite's lower() folds only ASCII.
create table users (
    id text primary key,
    email text not null check (length(email) between 3 and 254),
    password_hash text not null,
    created_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

create unique index users_email_lower_key on users (lower(email));
