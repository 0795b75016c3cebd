//! Many favorites at once, by SQL behind the functions' back (a million through the API would
//! take longer than the benchmark): ids `fav-<g>` for g in lo..=hi, `fav-1` the newest, one
//! millisecond apart, shaped like real ones: a third each of insights, charts and audiences, or
//! ([`favorites_with_rare_audiences`]) one audience in every `n`, the rest charts.

use anyhow::Context;
use sqlx::PgPool;
use uuid::Uuid;

const INSERT: &str = r#"
insert into favorites (user_id, id, asset, created_at, updated_at)
select $1, 'fav-' || g,
       -- $4 = 0: g % 3 picks the type; $4 = n: every n-th an audience (2), the others charts (1).
       case case when $4 = 0 then g % 3 when g % $4 = 0 then 2 else 1 end
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
  from generate_series($2::bigint, $3::bigint) as g"#;

/// Seeding behind the functions' back, bump the version as every write through them does: the
/// cache labels what it holds with it.
const BUMP_VERSION: &str = "update users set favorites_version = favorites_version + 1 where id = $1";

/// Adds favorites `fav-<lo>` to `fav-<hi>` to `user`, a third of each type, then refreshes the
/// planner's statistics.
pub async fn favorites(db: &PgPool, user: Uuid, lo: u64, hi: u64) -> anyhow::Result<()> {
    insert(db, user, lo, hi, 0).await
}

/// Like [`favorites`], with one audience in every `every` favorites (`fav-<k·every>`, named
/// "Young urban shoppers #…"), the others charts ("Monthly revenue #…"): a type, and a word,
/// that `1/every` of the list has.
pub async fn favorites_with_rare_audiences(
    db: &PgPool,
    user: Uuid,
    lo: u64,
    hi: u64,
    every: u64,
) -> anyhow::Result<()> {
    anyhow::ensure!(every > 0, "one audience in every 0 favorites");
    insert(db, user, lo, hi, every).await
}

async fn insert(db: &PgPool, user: Uuid, lo: u64, hi: u64, every: u64) -> anyhow::Result<()> {
    let mut tx = db.begin().await.context("seeding: starting a transaction")?;
    sqlx::query(INSERT)
        .bind(user)
        .bind(i64::try_from(lo)?)
        .bind(i64::try_from(hi)?)
        .bind(i64::try_from(every)?)
        .execute(&mut *tx)
        .await
        .context("seeding favorites")?;
    sqlx::query(BUMP_VERSION)
        .bind(user)
        .execute(&mut *tx)
        .await
        .context("seeding: bumping the favorites version")?;
    tx.commit().await.context("seeding: committing")?;
    // favorite_search too: the trigger filled it, and filters plan from its statistics.
    sqlx::raw_sql("vacuum analyze favorites, favorite_search")
        .execute(db)
        .await
        .context("seeding: vacuum analyze")?;
    Ok(())
}

/// The id of the user with this email.
pub async fn user_id(db: &PgPool, email: &str) -> anyhow::Result<Uuid> {
    sqlx::query_scalar("select id from users where email = $1")
        .bind(email)
        .fetch_one(db)
        .await
        .with_context(|| format!("finding user {email}"))
}
