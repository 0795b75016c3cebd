-- Users of the service.
--
-- id: a UUIDv7 made by the application, so ids sort by creation time and need no sequence
--     (a sequence would be one more round trip through RDS Proxy on every signup).
-- email: stored lower-cased by the application. The unique index is on lower(email) anyway,
--     so that the database, not a read-then-write in the application, decides "already taken"
--     case-insensitively, whatever writes the row.
-- password_hash: a bcrypt string; the password itself is never stored.
create table users (
    id uuid primary key,
    email text not null check (length(email) between 3 and 254),
    password_hash text not null,
    created_at timestamptz not null default now()
);

create unique index users_email_lower_key on users (lower(email));
