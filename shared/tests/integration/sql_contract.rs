//! Contract tests of the SQL adapters: every test runs against Postgres and SQLite, and both
//! must behave the same way, because the functions cannot tell which one they talk to.

use crate::both_dialects;
use crate::support::a_user;

use futures::TryStreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use shared::adapters::sql::Database;
use shared::domain::{
    Asset, AssetInput, AssetType, DESCRIPTION_MAX_CHARS, Description, Email, FavoriteId, ListFilter, NAME_MAX_CHARS,
    PasswordHash, SEARCH_MAX_CHARS, SearchText, User, UserId,
};
use shared::ports::{
    ChangeFavoriteError, FavoritesVersion, InsertFavoriteError, InsertUserError, ListPosition, ListQuery,
};

fn insight(id: &str) -> Asset {
    let input: AssetInput =
        serde_json::from_value(json!({"id": id, "type": "insight", "name": format!("insight {id}"), "content": "c"}))
            .unwrap();
    input.parse().unwrap()
}

async fn list(db: &Database, user: UserId, query: ListQuery) -> Vec<serde_json::Value> {
    db.favorites()
        .list_favorites(user, query)
        .await
        .unwrap()
        .map_ok(|row| serde_json::from_str::<serde_json::Value>(&row.json).unwrap())
        .try_collect()
        .await
        .unwrap()
}

fn all() -> ListQuery {
    ListQuery {
        after: None,
        offset: 0,
        limit: None,
        filter: ListFilter::default(),
    }
}

fn ids(items: &[serde_json::Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_string())
        .collect()
}

/// The ids of `query`'s list, read a page of `size` at a time, each page after the last
/// position of the one before, until a page comes back short.
async fn walk_by_cursor(db: &Database, user: UserId, query: ListQuery, size: u64) -> Vec<String> {
    let mut walked = Vec::new();
    let mut after: Option<ListPosition> = None;
    loop {
        let page: Vec<_> = db
            .favorites()
            .list_favorites(
                user,
                ListQuery {
                    after: after.clone(),
                    limit: Some(size),
                    ..query.clone()
                },
            )
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        walked.extend(page.iter().map(|row| row.position.id.clone()));
        match page.last() {
            Some(last) if page.len() as u64 == size => after = Some(last.position.clone()),
            _ => return walked,
        }
    }
}

both_dialects! {
    a_user_is_found_by_email_whatever_its_case => user_is_found_by_email_whatever_its_case;
    an_email_is_taken_case_insensitively => email_is_taken_case_insensitively;
    racing_signups_with_one_email_store_exactly_one_user => racing_signups_store_one_user;
    a_favorite_reads_back_as_stored => favorite_reads_back_as_stored;
    a_duplicate_id_is_refused_for_the_same_user_only => duplicate_id_is_refused_for_the_same_user_only;
    nobody_reads_edits_or_removes_another_users_favorite => nobody_touches_another_users_favorite;
    an_update_changes_only_the_description_and_updated_at => update_changes_only_description;
    a_removed_favorite_is_gone => removed_favorite_is_gone;
    the_list_is_newest_first_and_scoped_to_its_user => list_is_newest_first_and_scoped;
    a_listed_favorite_has_the_same_shape_as_a_fetched_one => listed_favorite_matches_fetched_one;
    keyset_paging_walks_the_list_without_gaps_or_repeats => keyset_paging_walks_the_list;
    offset_paging_skips_whole_pages => offset_paging_skips_pages;
    a_list_dropped_midway_leaves_the_pool_usable => dropped_list_leaves_pool_usable;
    a_favorite_for_a_user_that_does_not_exist_is_refused => favorite_for_unknown_user_is_refused;
    every_change_and_only_a_change_bumps_the_version_once => every_change_bumps_the_version_once;
    racing_changes_get_distinct_versions_in_commit_order => racing_changes_get_distinct_versions;
    a_listing_reports_the_version_of_its_own_snapshot => listing_reports_its_snapshot_version;
    a_type_filter_keeps_only_those_types_in_listing_order => type_filter_keeps_only_those_types;
    a_search_finds_its_text_in_name_or_description_whatever_the_case => search_finds_text_in_name_or_description;
    a_search_takes_percent_and_underscore_literally => search_takes_wildcards_literally;
    paging_a_filtered_list_walks_only_its_matches => paging_a_filtered_list_walks_its_matches;
    a_search_follows_edits_removals_and_reused_ids => search_follows_edits_and_removals;
    a_filtered_list_longer_than_a_batch_has_every_match_once => filtered_list_longer_than_a_batch;
    a_search_finds_every_text_of_a_long_description_once => search_finds_every_text_of_a_long_description;
    the_longest_favorite_in_four_byte_characters_is_stored_edited_and_found => longest_favorite_is_stored_and_found;
    every_change_moves_the_revision_strictly_forward => every_change_moves_the_revision_forward;
    a_change_expecting_a_revision_the_favorite_left_is_stale_and_changes_nothing => stale_changes_change_nothing;
    a_deleted_user_takes_all_their_favorites_and_only_theirs => deleted_user_takes_their_favorites;
    a_deletion_that_fails_midway_deletes_nothing => failed_deletion_deletes_nothing;
    adds_racing_a_deletion_leave_no_favorite_behind_and_never_deadlock => adds_racing_a_deletion_leave_nothing;
    an_account_is_found_with_its_favorites_version_until_it_is_deleted => account_is_found_until_deleted;
    a_deleted_users_email_can_sign_up_again => deleted_users_email_is_free_again;
}

async fn user_is_found_by_email_whatever_its_case(db: &Database) {
    let users = db.users();
    let user = User {
        id: UserId::generate(),
        email: Email::parse("Grace@Example.com").unwrap(),
        password_hash: PasswordHash::new("$2b$04$x".into()),
    };
    users.insert_user(&user).await.unwrap();
    let found = users
        .user_by_email(&Email::parse("GRACE@example.COM").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, user.id);
    assert_eq!(found.password_hash.as_str(), "$2b$04$x");
    assert!(
        users
            .user_by_email(&Email::parse("nobody@example.com").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

async fn email_is_taken_case_insensitively(db: &Database) {
    let users = db.users();
    let make = |email: &str| User {
        id: UserId::generate(),
        email: Email::parse(email).unwrap(),
        password_hash: PasswordHash::new("h".into()),
    };
    users.insert_user(&make("ada@example.com")).await.unwrap();
    let again = users.insert_user(&make("ADA@EXAMPLE.COM")).await;
    assert!(matches!(again, Err(InsertUserError::EmailTaken)), "{again:?}");
}

async fn racing_signups_store_one_user(db: &Database) {
    let attempts = (0..8).map(|_| {
        let users = db.users();
        async move {
            let user = User {
                id: UserId::generate(),
                email: Email::parse("race@example.com").unwrap(),
                password_hash: PasswordHash::new("h".into()),
            };
            users.insert_user(&user).await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let stored = results.iter().filter(|r| r.is_ok()).count();
    let taken = results
        .iter()
        .filter(|r| matches!(r, Err(InsertUserError::EmailTaken)))
        .count();
    assert_eq!((stored, taken), (1, 7), "{results:?}");
}

async fn favorite_reads_back_as_stored(db: &Database) {
    let user = a_user(db).await;
    let input: AssetInput = serde_json::from_value(json!({
        "id": "chart-1", "type": "chart", "name": "Revenue", "description": "monthly",
        "x_axis": "month", "y_axis": "EUR", "data": [{"x": "2026-01", "y": 1.5}, {"x": 2, "y": -3}]
    }))
    .unwrap();
    let asset = input.parse().unwrap();
    let stored = db.favorites().insert_favorite(user, &asset).await.unwrap().value;
    assert_eq!(stored.asset, asset);
    assert_eq!(stored.created_at, stored.updated_at);
    let fetched = db.favorites().get_favorite(user, &asset.id).await.unwrap().unwrap();
    assert_eq!(fetched, stored);
}

async fn duplicate_id_is_refused_for_the_same_user_only(db: &Database) {
    let (alice, bob) = (a_user(db).await, a_user(db).await);
    let favorites = db.favorites();
    favorites.insert_favorite(alice, &insight("same")).await.unwrap();
    let again = favorites.insert_favorite(alice, &insight("same")).await;
    assert!(matches!(again, Err(InsertFavoriteError::Duplicate)), "{again:?}");
    favorites
        .insert_favorite(bob, &insight("same"))
        .await
        .expect("ids are unique per user, not globally");
}

async fn nobody_touches_another_users_favorite(db: &Database) {
    let (alice, mallory) = (a_user(db).await, a_user(db).await);
    let favorites = db.favorites();
    let id = FavoriteId::parse("secret").unwrap();
    favorites.insert_favorite(alice, &insight("secret")).await.unwrap();
    assert!(favorites.get_favorite(mallory, &id).await.unwrap().is_none());
    edit_and_remove_find_nothing(db, mallory, &id).await;
    assert!(list(db, mallory, all()).await.is_empty());
    let kept = favorites.get_favorite(alice, &id).await.unwrap().unwrap();
    assert_eq!(kept.asset.description.as_str(), "");
}

/// `user` has no favorite `id`: editing and removing it find nothing and change nothing.
async fn edit_and_remove_find_nothing(db: &Database, user: UserId, id: &FavoriteId) {
    let favorites = db.favorites();
    let edit = Description::parse("pwned").unwrap();
    let edited = favorites.update_description(user, id, &edit, None).await.unwrap();
    assert!(edited.is_none());
    assert!(favorites.remove_favorite(user, id, None).await.unwrap().is_none());
}

async fn update_changes_only_description(db: &Database) {
    let user = a_user(db).await;
    let favorites = db.favorites();
    let stored = favorites.insert_favorite(user, &insight("i")).await.unwrap().value;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let description = Description::parse("now with a description; ' or 1=1 --").unwrap();
    let updated = favorites
        .update_description(user, &stored.asset.id, &description, None)
        .await
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(updated.asset.description, description);
    assert_eq!(updated.asset.name, stored.asset.name);
    assert_eq!(updated.asset.kind, stored.asset.kind);
    assert_eq!(updated.created_at, stored.created_at);
    assert!(updated.updated_at > stored.updated_at);
    let missing = FavoriteId::parse("missing").unwrap();
    assert!(
        favorites
            .update_description(user, &missing, &description, None)
            .await
            .unwrap()
            .is_none()
    );
}

async fn removed_favorite_is_gone(db: &Database) {
    let user = a_user(db).await;
    let favorites = db.favorites();
    let id = FavoriteId::parse("gone").unwrap();
    favorites.insert_favorite(user, &insight("gone")).await.unwrap();
    assert!(favorites.remove_favorite(user, &id, None).await.unwrap().is_some());
    assert!(favorites.remove_favorite(user, &id, None).await.unwrap().is_none());
    assert!(favorites.get_favorite(user, &id).await.unwrap().is_none());
    favorites
        .insert_favorite(user, &insight("gone"))
        .await
        .expect("a removed id can be used again");
}

async fn list_is_newest_first_and_scoped(db: &Database) {
    let (alice, bob) = (a_user(db).await, a_user(db).await);
    let favorites = db.favorites();
    for id in ["a", "b", "c"] {
        favorites.insert_favorite(alice, &insight(id)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    favorites.insert_favorite(bob, &insight("bobs")).await.unwrap();
    assert_eq!(ids(&list(db, alice, all()).await), ["c", "b", "a"]);
    assert_eq!(ids(&list(db, bob, all()).await), ["bobs"]);
}

async fn listed_favorite_matches_fetched_one(db: &Database) {
    let user = a_user(db).await;
    let input: AssetInput = serde_json::from_value(json!({
        "id": "aud", "type": "audience", "name": "Young GR", "description": "d",
        "rules": {"country": "GR", "gender": "female", "age_min": 18, "age_max": 24, "social_media_hours": 2.5}
    }))
    .unwrap();
    let stored = db
        .favorites()
        .insert_favorite(user, &input.parse().unwrap())
        .await
        .unwrap()
        .value;
    let listed = list(db, user, all()).await;
    assert_eq!(listed, vec![serde_json::to_value(&stored).unwrap()]);
}

async fn keyset_paging_walks_the_list(db: &Database) {
    let user = a_user(db).await;
    let favorites = db.favorites();
    // Inserted in one burst: many share a timestamp, so the id must break the ties.
    for i in 0..23 {
        favorites
            .insert_favorite(user, &insight(&format!("f{i:02}")))
            .await
            .unwrap();
    }
    let everything = ids(&list(db, user, all()).await);
    let walked = walk_by_cursor(db, user, all(), 5).await;
    assert_eq!(walked, everything);
    assert_eq!(walked.len(), 23);
}

async fn offset_paging_skips_pages(db: &Database) {
    let user = a_user(db).await;
    for i in 0..7 {
        db.favorites()
            .insert_favorite(user, &insight(&format!("o{i}")))
            .await
            .unwrap();
    }
    let everything = ids(&list(db, user, all()).await);
    let third_page = ids(&list(
        db,
        user,
        ListQuery {
            after: None,
            offset: 6,
            limit: Some(3),
            filter: ListFilter::default(),
        },
    )
    .await);
    assert_eq!(third_page, everything[6..]);
}

async fn dropped_list_leaves_pool_usable(db: &Database) {
    let user = a_user(db).await;
    for i in 0..600 {
        db.favorites()
            .insert_favorite(user, &insight(&format!("d{i:03}")))
            .await
            .unwrap();
    }
    for _ in 0..6 {
        let mut stream = db.favorites().list_favorites(user, all()).await.unwrap();
        let first = stream.try_next().await.unwrap();
        assert!(first.is_some());
        drop(stream);
    }
    assert_eq!(list(db, user, all()).await.len(), 600);
}

async fn favorite_for_unknown_user_is_refused(db: &Database) {
    let result = db.favorites().insert_favorite(UserId::generate(), &insight("x")).await;
    assert!(matches!(result, Err(InsertFavoriteError::UnknownUser)), "{result:?}");
}

async fn every_change_bumps_the_version_once(db: &Database) {
    let (user, other) = (a_user(db).await, a_user(db).await);
    let favorites = db.favorites();
    let version = |user| {
        let favorites = favorites.clone();
        async move { favorites.favorites_version(user).await.unwrap() }
    };
    assert_eq!(version(user).await, FavoritesVersion(0));
    assert_eq!(
        version(UserId::generate()).await,
        FavoritesVersion(0),
        "unknown users are at 0"
    );
    let added = favorites.insert_favorite(user, &insight("v")).await.unwrap();
    assert_eq!(added.version, FavoritesVersion(1));
    let id = FavoriteId::parse("v").unwrap();
    let description = Description::parse("d").unwrap();
    let updated = favorites
        .update_description(user, &id, &description, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.version, FavoritesVersion(2));
    // Refused or missing: no change, no new version.
    assert!(favorites.insert_favorite(user, &insight("v")).await.is_err());
    edit_and_remove_find_nothing(db, user, &FavoriteId::parse("missing").unwrap()).await;
    assert_eq!(version(user).await, FavoritesVersion(2));
    assert_eq!(
        favorites.remove_favorite(user, &id, None).await.unwrap(),
        Some(FavoritesVersion(3))
    );
    assert_eq!(version(user).await, FavoritesVersion(3));
    assert_eq!(version(other).await, FavoritesVersion(0), "versions are per user");
}

async fn racing_changes_get_distinct_versions(db: &Database) {
    let user = a_user(db).await;
    let adds = (0..12).map(|i| {
        let favorites = db.favorites();
        async move {
            favorites
                .insert_favorite(user, &insight(&format!("r{i}")))
                .await
                .unwrap()
                .version
        }
    });
    let mut versions: Vec<u64> = futures::future::join_all(adds).await.iter().map(|v| v.0).collect();
    versions.sort();
    assert_eq!(versions, (1..=12).collect::<Vec<_>>());
}

async fn listing_reports_its_snapshot_version(db: &Database) {
    let user = a_user(db).await;
    let favorites = db.favorites();
    for i in 0..300 {
        favorites
            .insert_favorite(user, &insight(&format!("s{i:03}")))
            .await
            .unwrap();
    }
    let listing = favorites.list_favorites_versioned(user, all()).await.unwrap();
    assert_eq!(listing.version, FavoritesVersion(300));
    // Changes committed while the listing streams are not part of it.
    let mut rows = listing.rows;
    let first = rows.try_next().await.unwrap().unwrap();
    favorites.insert_favorite(user, &insight("late")).await.unwrap();
    favorites
        .remove_favorite(user, &FavoriteId::parse("s000").unwrap(), None)
        .await
        .unwrap();
    let rest: Vec<_> = rows.try_collect().await.unwrap();
    let mut seen: Vec<String> = std::iter::once(first).chain(rest).map(|row| row.position.id).collect();
    assert_eq!(seen.len(), 300);
    assert!(seen.contains(&"s000".to_string()) && !seen.contains(&"late".to_string()));
    seen.clear();
    assert_eq!(favorites.favorites_version(user).await.unwrap(), FavoritesVersion(302));
}

/// A favorite of each type, by `kind`, with this name and description.
fn asset(id: &str, kind: &str, name: &str, description: &str) -> Asset {
    let mut value = json!({"id": id, "type": kind, "name": name, "description": description});
    match kind {
        "chart" => {
            value["x_axis"] = json!("week");
            value["data"] = json!([{"x": 1, "y": 2}]);
        }
        "insight" => value["content"] = json!("c"),
        _ => value["rules"] = json!({"country": "GR"}),
    }
    serde_json::from_value::<AssetInput>(value).unwrap().parse().unwrap()
}

fn filtered(types: &[AssetType], q: Option<&str>) -> ListQuery {
    ListQuery {
        filter: ListFilter::new(types.iter().copied(), q.map(|q| SearchText::parse(q).unwrap())),
        ..all()
    }
}

/// Stores the favorites one by one, a few milliseconds apart, so that the listing order is
/// the reverse of `assets`.
async fn store_in_order(db: &Database, user: UserId, assets: &[Asset]) {
    for asset in assets {
        db.favorites().insert_favorite(user, asset).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
}

async fn type_filter_keeps_only_those_types(db: &Database) {
    let (user, other) = (a_user(db).await, a_user(db).await);
    store_in_order(
        db,
        user,
        &[
            asset("c1", "chart", "n", ""),
            asset("i1", "insight", "n", ""),
            asset("a1", "audience", "n", ""),
            asset("c2", "chart", "n", ""),
            asset("i2", "insight", "n", ""),
        ],
    )
    .await;
    store_in_order(db, other, &[asset("c9", "chart", "n", "")]).await;
    use AssetType::{Audience, Chart, Insight};
    assert_eq!(ids(&list(db, user, filtered(&[Chart], None)).await), ["c2", "c1"]);
    assert_eq!(ids(&list(db, user, filtered(&[Audience], None)).await), ["a1"]);
    assert_eq!(
        ids(&list(db, user, filtered(&[Insight, Chart], None)).await),
        ["i2", "c2", "i1", "c1"]
    );
    assert_eq!(
        ids(&list(db, user, filtered(&[Audience, Chart, Insight], None)).await).len(),
        5
    );
}

async fn search_finds_text_in_name_or_description(db: &Database) {
    let user = a_user(db).await;
    store_in_order(
        db,
        user,
        &[
            asset("name", "insight", "Churn by week", ""),
            asset("description", "chart", "Weekly", "why customers CHURN"),
            asset("neither", "insight", "Revenue", "by region"),
            // "ab" + "cd": the text "bc" spans the two fields and is in neither.
            asset("spanning", "audience", "ab", "cd"),
        ],
    )
    .await;
    let other = a_user(db).await;
    store_in_order(db, other, &[asset("theirs", "insight", "churn", "")]).await;
    assert_eq!(
        ids(&list(db, user, filtered(&[], Some("churn"))).await),
        ["description", "name"]
    );
    assert_eq!(ids(&list(db, user, filtered(&[], Some("cHuRn b"))).await), ["name"]);
    assert_eq!(
        ids(&list(db, user, filtered(&[AssetType::Chart], Some("churn"))).await),
        ["description"]
    );
    assert!(list(db, user, filtered(&[], Some("bc"))).await.is_empty());
    assert!(
        list(db, user, filtered(&[AssetType::Audience], Some("churn")))
            .await
            .is_empty()
    );
}

async fn search_takes_wildcards_literally(db: &Database) {
    let user = a_user(db).await;
    store_in_order(
        db,
        user,
        &[
            asset("percent", "insight", "50% off", ""),
            asset("digits", "insight", "500 off", ""),
            asset("underscore", "insight", "a_b", "back\\slash"),
            asset("letter", "insight", "axb", ""),
        ],
    )
    .await;
    assert_eq!(ids(&list(db, user, filtered(&[], Some("50%"))).await), ["percent"]);
    assert_eq!(ids(&list(db, user, filtered(&[], Some("a_b"))).await), ["underscore"]);
    assert_eq!(ids(&list(db, user, filtered(&[], Some("k\\s"))).await), ["underscore"]);
}

/// Moves every favorite `f<i>` of `user` to the instant 12:00:00 + i/4 seconds, so that the
/// list holds runs of four favorites created at the same instant, which only their ids order.
async fn tie_in_fours(db: &Database, user: UserId) {
    match db {
        Database::Postgres(pg) => {
            sqlx::query(
                "update favorites
                    set created_at = timestamptz '2026-11-20 12:00:00+00' + (substr(id, 2)::int / 4) * interval '1 second'
                  where user_id = $1",
            )
            .bind(user.as_uuid())
            .execute(pg.pool())
            .await
            .unwrap();
        }
        Database::Sqlite(pool) => {
            sqlx::query(
                "update favorites
                    set created_at = strftime('%Y-%m-%dT%H:%M:%f000Z', '2026-11-20 12:00:00',
                                              '+' || (cast(substr(id, 2) as integer) / 4) || ' seconds')
                  where user_id = $1",
            )
            .bind(user.to_string())
            .execute(pool)
            .await
            .unwrap();
        }
    }
}

/// Within a filter, with and without a type: pages by cursor walk every match once, in listing
/// order, also where a page ends inside a run of favorites created at the same instant; a page
/// by number skips whole pages.
async fn paging_a_filtered_list_walks_its_matches(db: &Database) {
    let user = a_user(db).await;
    for i in 0..12 {
        let (kind, name) = match i % 3 {
            0 => ("chart", format!("churn {i:02}")),
            1 => ("chart", format!("revenue {i:02}")),
            _ => ("insight", format!("churn {i:02}")),
        };
        let asset = asset(&format!("f{i:02}"), kind, &name, "");
        db.favorites().insert_favorite(user, &asset).await.unwrap();
    }
    tie_in_fours(db, user).await;
    for (types, expected) in [
        (&[AssetType::Chart][..], &["f09", "f06", "f03", "f00"][..]),
        (&[], &["f11", "f09", "f08", "f06", "f05", "f03", "f02", "f00"]),
    ] {
        let query = filtered(types, Some("CHURN"));
        assert_eq!(ids(&list(db, user, query.clone()).await), expected, "{types:?}");
        let walked = walk_by_cursor(db, user, query.clone(), 3).await;
        assert_eq!(walked, expected, "{types:?}: by cursor");
        let second_page = ListQuery {
            offset: 2,
            limit: Some(2),
            ..query
        };
        assert_eq!(
            ids(&list(db, user, second_page).await),
            expected[2..4],
            "{types:?}: by number"
        );
    }
}

async fn search_follows_edits_and_removals(db: &Database) {
    let user = a_user(db).await;
    let favorites = db.favorites();
    store_in_order(
        db,
        user,
        &[
            asset("edited", "insight", "Revenue", "old words"),
            asset("removed", "chart", "Churn", ""),
        ],
    )
    .await;
    let search = |q: &'static str| async move { ids(&list(db, user, filtered(&[], Some(q))).await) };
    let edited = FavoriteId::parse("edited").unwrap();
    let description = Description::parse("now about CHURN").unwrap();
    favorites
        .update_description(user, &edited, &description, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(search("churn").await, ["removed", "edited"]);
    assert!(search("old words").await.is_empty(), "the old description is not found");

    let removed = FavoriteId::parse("removed").unwrap();
    favorites.remove_favorite(user, &removed, None).await.unwrap().unwrap();
    assert_eq!(search("churn").await, ["edited"]);
    assert!(ids(&list(db, user, filtered(&[AssetType::Chart], None)).await).is_empty());

    store_in_order(db, user, &[asset("removed", "audience", "Shoppers", "")]).await;
    assert_eq!(search("churn").await, ["edited"]);
    assert_eq!(search("shoppers").await, ["removed"]);
    assert_eq!(
        ids(&list(db, user, filtered(&[AssetType::Audience], None)).await),
        ["removed"]
    );
}

/// More matches than one round trip of the listing brings (256 rows): every batch after the
/// first resumes where the one before ended, within the filter.
async fn filtered_list_longer_than_a_batch(db: &Database) {
    let user = a_user(db).await;
    for i in 0..600 {
        let name = if i % 2 == 0 {
            format!("churn {i:03}")
        } else {
            format!("revenue {i:03}")
        };
        let kind = if i % 4 < 2 { "chart" } else { "insight" };
        db.favorites()
            .insert_favorite(user, &asset(&format!("f{i:03}"), kind, &name, ""))
            .await
            .unwrap();
    }
    let everything = ids(&list(db, user, all()).await);
    let churn: fn(usize) -> bool = |i| i % 2 == 0;
    let chart: fn(usize) -> bool = |i| i % 4 < 2;
    for (query, wanted) in [
        (filtered(&[], Some("churn")), churn),
        (filtered(&[AssetType::Chart], None), chart),
    ] {
        let label = format!("{:?}", query.filter);
        // A limit above the matches, so that a batch which does not move on fails, not loops.
        let found = ids(&list(
            db,
            user,
            ListQuery {
                limit: Some(1000),
                ..query
            },
        )
        .await);
        let expected: Vec<String> = everything
            .iter()
            .filter(|id| wanted(id[1..].parse().unwrap()))
            .cloned()
            .collect();
        assert_eq!(found.len(), 300, "{label}");
        assert_eq!(found, expected, "{label}: in listing order, each once");
    }
}

/// `count` characters from `alphabet`, pseudo-random but the same every run, so that no
/// stretch of them repeats elsewhere.
fn scrambled(alphabet: &[char], count: usize, seed: u64) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())])
        .collect()
}

/// A search text found anywhere in the longest description, wherever it falls against the
/// parts Postgres stores it in (500 characters, each from 300 past the last), finds its
/// favorite once, in any case.
async fn search_finds_every_text_of_a_long_description(db: &Database) {
    let user = a_user(db).await;
    let letters: Vec<char> = ('a'..='z').chain([' ']).collect();
    let description = scrambled(&letters, DESCRIPTION_MAX_CHARS, 17);
    store_in_order(
        db,
        user,
        &[
            asset("long", "insight", "Long read", &description),
            asset("short", "chart", "Short", "nothing to see"),
        ],
    )
    .await;
    let chars: Vec<char> = description.chars().collect();
    let mut starts: Vec<usize> = (0..=DESCRIPTION_MAX_CHARS - SEARCH_MAX_CHARS).step_by(7).collect();
    starts.push(DESCRIPTION_MAX_CHARS - SEARCH_MAX_CHARS);
    for start in starts {
        let text: String = chars[start..start + SEARCH_MAX_CHARS].iter().collect();
        let text = if start % 2 == 0 { text.to_uppercase() } else { text };
        assert_eq!(
            ids(&list(db, user, filtered(&[], Some(&text))).await),
            ["long"],
            "the {SEARCH_MAX_CHARS} characters from {start}"
        );
    }
    let absent = scrambled(&letters, SEARCH_MAX_CHARS, 18);
    assert!(list(db, user, filtered(&[], Some(&absent))).await.is_empty());
}

/// A name and a description as long as they may be, in characters of four bytes each (2 201
/// characters, 8 804 bytes, more than an index entry holds): stored, found by its last words,
/// edited, and found by its new ones only.
async fn longest_favorite_is_stored_and_found(db: &Database) {
    let user = a_user(db).await;
    // Supplementary CJK ideographs (U+20000..), four bytes each in UTF-8; none has a case.
    let ideographs: Vec<char> = (0x2_0000..0x2_0400).filter_map(char::from_u32).collect();
    let name = scrambled(&ideographs, NAME_MAX_CHARS, 1);
    let description = scrambled(&ideographs, DESCRIPTION_MAX_CHARS, 2);
    store_in_order(db, user, &[asset("wide", "audience", &name, &description)]).await;
    let tail = |text: &str| -> String { text.chars().skip(text.chars().count() - SEARCH_MAX_CHARS).collect() };
    let search = |q: String| async move { ids(&list(db, user, filtered(&[], Some(&q))).await) };
    assert_eq!(search(tail(&name)).await, ["wide"]);
    assert_eq!(search(tail(&description)).await, ["wide"]);

    let edited = scrambled(&ideographs, DESCRIPTION_MAX_CHARS, 3);
    let id = FavoriteId::parse("wide").unwrap();
    db.favorites()
        .update_description(user, &id, &Description::parse(&edited).unwrap(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(search(tail(&edited)).await, ["wide"]);
    assert!(
        search(tail(&description)).await.is_empty(),
        "the old description is not found"
    );
    assert_eq!(search(tail(&name)).await, ["wide"]);
}

async fn every_change_moves_the_revision_forward(db: &Database) {
    let user = a_user(db).await;
    let favorites = db.favorites();
    let id = FavoriteId::parse("r").unwrap();
    let mut revision = favorites
        .insert_favorite(user, &insight("r"))
        .await
        .unwrap()
        .value
        .revision();
    // Back to back, well within one millisecond of each other.
    for text in ["one", "two", "three"] {
        let changed = favorites
            .update_description(user, &id, &Description::parse(text).unwrap(), None)
            .await
            .unwrap()
            .unwrap()
            .value;
        assert!(changed.updated_at > revision.updated_at, "{text}");
        assert_eq!(changed.created_at, revision.created_at);
        revision = changed.revision();
        let read = favorites.get_favorite(user, &id).await.unwrap().unwrap();
        assert_eq!(
            read.revision(),
            revision,
            "what is read is the revision the change returned"
        );
    }
}

async fn stale_changes_change_nothing(db: &Database) {
    let user = a_user(db).await;
    let favorites = db.favorites();
    let id = FavoriteId::parse("s").unwrap();
    let seen = favorites
        .insert_favorite(user, &insight("s"))
        .await
        .unwrap()
        .value
        .revision();
    let edit = |text: &str| Description::parse(text).unwrap();
    let current = favorites
        .update_description(user, &id, &edit("first"), Some(seen))
        .await
        .unwrap()
        .expect("the favorite was in the revision expected")
        .value;

    let stale = favorites
        .update_description(user, &id, &edit("second"), Some(seen))
        .await;
    assert!(matches!(stale, Err(ChangeFavoriteError::Stale)), "{stale:?}");
    let stale = favorites.remove_favorite(user, &id, Some(seen)).await;
    assert!(matches!(stale, Err(ChangeFavoriteError::Stale)), "{stale:?}");
    let read = favorites.get_favorite(user, &id).await.unwrap().unwrap();
    assert_eq!(read, current, "a stale change changed nothing");

    // Another user's favorite with the same id, in the same revision, is still no favorite.
    let other = a_user(db).await;
    assert!(
        favorites
            .remove_favorite(other, &id, Some(current.revision()))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        favorites
            .remove_favorite(user, &id, Some(current.revision()))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        favorites
            .update_description(user, &id, &edit("gone"), Some(current.revision()))
            .await
            .unwrap()
            .is_none(),
        "no favorite is no favorite, not a stale one"
    );
}

/// How many favorites `user` has, counted by the store's own listing.
async fn favorites_of(db: &Database, user: UserId) -> usize {
    list(db, user, all()).await.len()
}

async fn deleted_user_takes_their_favorites(db: &Database) {
    let (user, other) = (a_user(db).await, a_user(db).await);
    let favorites = db.favorites();
    for i in 0..30 {
        favorites
            .insert_favorite(user, &insight(&format!("d{i}")))
            .await
            .unwrap();
    }
    favorites.insert_favorite(other, &insight("d0")).await.unwrap();
    let users = db.users();
    assert!(users.user_by_id(user).await.unwrap().is_some());

    assert!(users.delete_user(user).await.unwrap(), "there was such a user");
    assert!(users.user_by_id(user).await.unwrap().is_none());
    assert_eq!(favorites_of(db, user).await, 0);
    let id = FavoriteId::parse("d0").unwrap();
    assert!(favorites.get_favorite(user, &id).await.unwrap().is_none());
    assert!(
        favorites.get_favorite(other, &id).await.unwrap().is_some(),
        "another user's favorite with the same id stays"
    );
    assert_eq!(favorites_of(db, other).await, 1);
    assert!(
        !users.delete_user(user).await.unwrap(),
        "a second deletion finds no user"
    );
    assert!(!users.delete_user(UserId::generate()).await.unwrap());
}

/// Makes every deletion of a user fail, as a failure between the favorites and the user would.
async fn refuse_user_deletions(db: &Database) {
    match db {
        Database::Postgres(pg) => {
            sqlx::query(
                "create function refuse_deletion() returns trigger language plpgsql
                 as $$ begin raise exception 'refused for the test'; end $$",
            )
            .execute(pg.pool())
            .await
            .unwrap();
            sqlx::query("create trigger refuse before delete on users for each row execute function refuse_deletion()")
                .execute(pg.pool())
                .await
                .unwrap();
        }
        Database::Sqlite(pool) => {
            sqlx::query(
                "create trigger refuse before delete on users begin select raise(abort, 'refused for the test'); end",
            )
            .execute(pool)
            .await
            .unwrap();
        }
    }
}

async fn failed_deletion_deletes_nothing(db: &Database) {
    let user = a_user(db).await;
    for i in 0..5 {
        db.favorites()
            .insert_favorite(user, &insight(&format!("h{i}")))
            .await
            .unwrap();
    }
    refuse_user_deletions(db).await;
    let users = db.users();
    assert!(users.delete_user(user).await.is_err());
    assert!(users.user_by_id(user).await.unwrap().is_some());
    assert_eq!(favorites_of(db, user).await, 5, "the favorites deleted first came back");
}

async fn adds_racing_a_deletion_leave_nothing(db: &Database) {
    for round in 0..5 {
        let user = a_user(db).await;
        let adds = (0..8).map(|i| {
            let favorites = db.favorites();
            async move {
                favorites
                    .insert_favorite(user, &insight(&format!("x{round}-{i}")))
                    .await
            }
        });
        let users = db.users();
        let (added, deleted) = tokio::join!(futures::future::join_all(adds), users.delete_user(user));
        assert!(deleted.unwrap(), "round {round}: the deletion failed");
        for result in added {
            assert!(
                matches!(result, Ok(_) | Err(InsertFavoriteError::UnknownUser)),
                "round {round}: an add failed otherwise than for the deleted user: {result:?}"
            );
        }
        assert_eq!(favorites_of(db, user).await, 0, "round {round}");
    }
}

async fn account_is_found_until_deleted(db: &Database) {
    let user = a_user(db).await;
    let users = db.users();
    let version = |account: Option<shared::ports::Account>| account.map(|a| a.favorites_version);
    assert_eq!(version(users.account(user).await.unwrap()), Some(FavoritesVersion(0)));
    let added = db.favorites().insert_favorite(user, &insight("a")).await.unwrap();
    assert_eq!(version(users.account(user).await.unwrap()), Some(added.version));
    assert!(users.account(UserId::generate()).await.unwrap().is_none());
    users.delete_user(user).await.unwrap();
    assert!(users.account(user).await.unwrap().is_none());
}

async fn deleted_users_email_is_free_again(db: &Database) {
    let users = db.users();
    let user = |id| User {
        id,
        email: Email::parse("Leaver@example.com").unwrap(),
        password_hash: PasswordHash::new("h".into()),
    };
    let first = UserId::generate();
    users.insert_user(&user(first)).await.unwrap();
    users.delete_user(first).await.unwrap();
    let second = UserId::generate();
    users.insert_user(&user(second)).await.unwrap();
    let found = users
        .user_by_email(&Email::parse("leaver@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, second, "a new account, not the old one back");
}
