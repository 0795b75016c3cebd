-- Seeds favorites lo..hi (ids fav-<g>, fav-1 the newest, one millisecond apart) for the user
-- :uid, a third each of insights, charts and audiences shaped like real ones. Used by the
-- benchmarks: psql -v uid=<uuid> -v lo=<first> -v hi=<last> -f scripts/seed-favorites.sql
-- Seeding behind the functions' back, it bumps the user's favorites_version as every write
-- through them does (the cache labels what it holds with it).
insert into favorites (user_id, id, asset, created_at, updated_at)
select :'uid'::uuid, 'fav-' || g,
       case g % 3
       when 0 then jsonb_build_object(
           'type', 'insight',
           'name', 'Weekly churn insight #' || g,
           'description', 'Trial users who never create a dashboard churn in their first week',
           'content', 'Of the trials started in week ' || (g % 52 + 1) || ', ' || (g % 60 + 20)
                      || '% churned within seven days; teams that shared one chart churned half as often.')
       when 1 then jsonb_build_object(
           'type', 'chart',
           'name', 'Monthly revenue #' || g,
           'description', 'Recognised revenue per month, EUR',
           'x_axis', 'month',
           'y_axis', 'EUR',
           'data', jsonb_build_array(
               jsonb_build_object('x', '2026-01', 'y', 1000 + g % 997),
               jsonb_build_object('x', '2026-02', 'y', 1100.5 + g % 991),
               jsonb_build_object('x', '2026-03', 'y', 1210 + g % 983),
               jsonb_build_object('x', '2026-04', 'y', 1331.25 + g % 977),
               jsonb_build_object('x', '2026-05', 'y', 1464 + g % 971)))
       else jsonb_build_object(
           'type', 'audience',
           'name', 'Young urban shoppers #' || g,
           'description', 'Heavy social media users who bought last month',
           'rules', jsonb_build_object(
               'gender', (array['female', 'male', 'other'])[g % 3 + 1],
               'country', (array['GR', 'DE', 'FR', 'ES', 'IT'])[g % 5 + 1],
               'age_min', 18 + g % 10,
               'age_max', 30 + g % 20,
               'social_media_hours', 2.5,
               'purchases_last_month', g % 7))
       end,
       timestamptz '2026-11-20 12:00:00+00' - g * interval '1 millisecond',
       timestamptz '2026-11-20 12:00:00+00' - g * interval '1 millisecond'
  from generate_series(:lo::bigint, :hi::bigint) as g;
update users set favorites_version = favorites_version + 1 where id = :'uid'::uuid;
