use std::sync::Arc;

use anyhow::Context;
use futures::StreamExt;

use super::cache::CacheGuard;
use crate::domain::UserId;
use crate::ports::{FavoriteLister, FavoriteStream, FavoritesVersion, FillTicket, ListQuery, ListedFavorite};

/// Rows per fill call: one Redis round trip per this many rows read.
const FILL_BATCH_ROWS: usize = 128;

/// The current version of the user's favorites: one primary-key lookup. A listing that starts
/// after this read shows this version or a later one, so a list labelled with it (its ETag) is
/// never newer than its label says.
pub async fn current_version(favorites: &dyn FavoriteLister, user: UserId) -> anyhow::Result<FavoritesVersion> {
    favorites
        .favorites_version(user)
        .await
        .context("reading the favorites version")
}

/// The user's favorites in listing order, as a stream: nothing here collects rows.
///
/// With the cache on, the database's version of the user's favorites and the cached page are
/// read at the same time; the page is served when the cache holds it at that version. On a
/// miss the database serves the page, and when the page starts at the head of the list the
/// same listing goes on past the page, up to the per-user cap, to fill the cache: the rows
/// past the page are read after the page is sent and before the stream ends, so the fill is
/// finished before the function returns (Lambda freezes the process after the response).
///
/// The cache holds the unfiltered list only: a filtered list is always the database's, served
/// by its own indexes, so a filter is as correct with the cache on as with it off.
///
/// `known`: the version read for this request already, if it was (the authentication layer
/// reads it with the account, as [`current_version`] would); the cache is checked against it
/// instead of reading it again.
pub async fn list_favorites(
    favorites: &dyn FavoriteLister,
    cache: Option<&Arc<CacheGuard>>,
    user: UserId,
    query: ListQuery,
    known: Option<FavoritesVersion>,
) -> anyhow::Result<FavoriteStream> {
    let Some(cache) = cache.filter(|_| query.filter.is_everything()) else {
        return favorites.list_favorites(user, query).await;
    };
    let (current, cached) = match known {
        Some(current) => (current, cache.peek(user, &query).await),
        None => {
            let (current, cached) = tokio::join!(current_version(favorites, user), cache.peek(user, &query));
            (current?, cached)
        }
    };
    if let Some(rows) = cache.page_if_current(cached, current) {
        return Ok(Box::pin(futures::stream::iter(rows.into_iter().map(Ok))));
    }
    let from_head = query.after.is_none() && query.offset == 0;
    if !from_head {
        return favorites.list_favorites(user, query).await;
    }
    let wanted = query.limit;
    let cap = cache.max_items() as u64;
    let listing = favorites
        .list_favorites_versioned(
            user,
            ListQuery {
                // One more than the cap tells a list that fits from one that does not.
                limit: wanted.map(|limit| limit.max(cap + 1)),
                ..query
            },
        )
        .await?;
    match cache.start_fill(user, listing.version).await {
        Some(ticket) => Ok(filling(listing.rows, wanted, cache.clone(), user, ticket)),
        None => Ok(match wanted {
            Some(limit) => Box::pin(listing.rows.take(usize::try_from(limit).unwrap_or(usize::MAX))),
            None => listing.rows,
        }),
    }
}

/// Passes the first `wanted` rows on and copies the first rows, up to the cache's cap, into
/// the cache in batches. A database error past the page only ends the fill: the page is whole.
fn filling(
    mut rows: FavoriteStream,
    wanted: Option<u64>,
    cache: Arc<CacheGuard>,
    user: UserId,
    ticket: FillTicket,
) -> FavoriteStream {
    let cap = cache.max_items();
    Box::pin(async_stream::try_stream! {
        let mut sent: u64 = 0;
        let mut read: usize = 0;
        let mut batch: Vec<ListedFavorite> = Vec::with_capacity(FILL_BATCH_ROWS);
        let mut filling = true;
        loop {
            let in_page = wanted.is_none_or(|limit| sent < limit);
            if !in_page && !filling {
                break;
            }
            let row = match rows.next().await {
                None => {
                    if filling {
                        // Everything there is fitted under the cap: the entry is the whole list.
                        cache.fill(user, &ticket, &batch, true).await;
                    }
                    break;
                }
                Some(Err(error)) if !in_page => {
                    tracing::warn!(error = format!("{error:#}"), "the listing failed past the page; the cache fill stops");
                    break;
                }
                Some(row) => row?,
            };
            read += 1;
            if filling {
                if read > cap {
                    // The list is longer than an entry may be: keep the prefix, not as whole.
                    if !batch.is_empty() {
                        cache.fill(user, &ticket, &batch, false).await;
                    }
                    batch.clear();
                    filling = false;
                } else {
                    batch.push(row.clone());
                    if batch.len() == FILL_BATCH_ROWS {
                        filling = cache.fill(user, &ticket, &batch, false).await;
                        batch.clear();
                    }
                }
            }
            if in_page {
                sent += 1;
                yield row;
            }
        }
    })
}
