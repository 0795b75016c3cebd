//! The favorites cache in Redis (ElastiCache in production).
//!
//! Per user, three keys sharing one hash tag (so they live in one slot if the cluster is ever
//! sharded, which server-side scripts need):
//!
//! - `fav:{<user>}:meta`, a hash: `v` the [`FavoritesVersion`] the entry reflects, `full` 1 when
//!   the entry holds the whole list, `n` and `bytes` its size, `fill` the token of the fill
//!   that may append to it.
//! - `fav:{<user>}:order`, a sorted set in listing order: every score 0, members
//!   `<created_at as 16 decimal digits of microseconds>:<id>`, so that byte order (`BYLEX`) is
//!   the listing order (ids are compared bytewise in the database too, `collate "C"`), and
//!   keyset paging is a `ZRANGE … BYLEX REV` from an exclusive bound.
//! - `fav:{<user>}:items`, a hash: id → the 16 digits of the sort key followed by the
//!   favorite's JSON.
//! - `fav:{<user>}:enrichment`, a hash: id → when the enrichment service was asked, and what it
//!   said (metadata or null); read only while younger than the enrichment TTL.
//!
//! Every operation is one Lua script, so each is atomic and a page is one round trip
//! (`EVALSHA`; the `redis` crate falls back to `EVAL` once when the server has not seen the
//! script yet). The scripts keep the invariant of [`FavoriteCache`]: an entry at version `v`
//! holds exactly the first rows of the database's listing at `v`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::{IntoConnectionInfo, Script, ScriptInvocation, Value};
use secrecy::ExposeSecret;

use crate::config::CacheSettings;
use crate::domain::UserId;
use crate::ports::{
    CacheChange, CachedEnrichment, CachedPage, EnrichmentCache, FavoriteCache, FavoritesVersion, FillTicket,
    ListPosition, ListQuery, ListedFavorite,
};

/// Width of the time part of a sort key: microseconds since 1970 fit 16 digits until 2286.
const TIME_DIGITS: usize = 16;

/// KEYS: meta, order, items. ARGV: start bound, offset, count (-1: to the end).
/// Returns {} for a miss, else {v, full, member1, value1, member2, value2, ...}.
const PAGE: &str = r"
local meta = redis.call('HMGET', KEYS[1], 'v', 'full', 'n')
if not meta[1] then return {} end
local n = tonumber(meta[3])
-- An entry that lost a key (evicted under memory pressure) is not an entry.
if redis.call('ZCARD', KEYS[2]) ~= n or redis.call('HLEN', KEYS[3]) ~= n then return {} end
local count = tonumber(ARGV[3])
if count < 0 and meta[2] ~= '1' then return {} end
local members = redis.call('ZRANGE', KEYS[2], ARGV[1], '-', 'BYLEX', 'REV', 'LIMIT', ARGV[2], ARGV[3])
local out = {meta[1], meta[2]}
if #members == 0 then return out end
local ids = {}
for i, member in ipairs(members) do ids[i] = string.sub(member, 18) end
local values = redis.call('HMGET', KEYS[3], unpack(ids))
for i, member in ipairs(members) do
  if not values[i] then return {} end
  out[#out + 1] = member
  out[#out + 1] = values[i]
end
return out
";

/// KEYS: meta, order, items. ARGV: version, kind (add|update|remove), id, member, value, ttl,
/// max items, max bytes. Returns what happened, for logs and tests.
const APPLY: &str = r"
local meta = redis.call('HMGET', KEYS[1], 'v', 'full', 'n', 'bytes')
local v = tonumber(meta[1])
local w = tonumber(ARGV[1])
if not v then return 'absent' end
if v >= w then return 'current' end
if v ~= w - 1 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  return 'invalidated'
end
local full, n, bytes = meta[2], tonumber(meta[3]), tonumber(meta[4])
local kind, id = ARGV[2], ARGV[3]
local old = redis.call('HGET', KEYS[3], id)
if kind == 'remove' then
  if old then
    redis.call('HDEL', KEYS[3], id)
    redis.call('ZREM', KEYS[2], string.sub(old, 1, 16) .. ':' .. id)
    n = n - 1
    bytes = bytes - #old
  end
elseif kind == 'update' then
  if old then
    redis.call('HSET', KEYS[3], id, ARGV[5])
    bytes = bytes + #ARGV[5] - #old
  end
elseif kind == 'add' then
  if old then
    -- The database refused duplicates, so at v = w - 1 there was no such favorite.
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
    return 'invalidated'
  end
  local lowest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  -- Inside the prefix (or the prefix is everything): it belongs; beyond its end: it does not.
  if full == '1' or (lowest and ARGV[4] > lowest) then
    redis.call('HSET', KEYS[3], id, ARGV[5])
    redis.call('ZADD', KEYS[2], 0, ARGV[4])
    n = n + 1
    bytes = bytes + #ARGV[5]
  end
end
local max_items, max_bytes = tonumber(ARGV[7]), tonumber(ARGV[8])
while n > 0 and (n > max_items or bytes > max_bytes) do
  local last = redis.call('ZPOPMIN', KEYS[2])[1]
  local last_id = string.sub(last, 18)
  bytes = bytes - #redis.call('HGET', KEYS[3], last_id)
  redis.call('HDEL', KEYS[3], last_id)
  n = n - 1
  full = '0'
end
redis.call('HSET', KEYS[1], 'v', w, 'full', full, 'n', n, 'bytes', bytes)
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[6]) end
return 'applied'
";

/// KEYS: meta, order, items. ARGV: version, token, ttl. Returns 1 when the fill may start.
const START_FILL: &str = r"
local meta = redis.call('HMGET', KEYS[1], 'v', 'fill')
local v = tonumber(meta[1])
local version = tonumber(ARGV[1])
-- Newer, or as new and not being filled: nothing to do. As new and being filled (or a fill
-- that was abandoned): take over, the rows are the same.
if v and (v > version or (v == version and not meta[2])) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], 'v', version, 'full', 0, 'n', 0, 'bytes', 0, 'fill', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
";

/// KEYS: meta, order, items. ARGV: version, token, ttl, max items, max bytes, end of list,
/// then member, id, value for each row. Returns 1 to go on, 0 to stop.
const FILL: &str = r"
local meta = redis.call('HMGET', KEYS[1], 'v', 'fill', 'n', 'bytes')
if tonumber(meta[1]) ~= tonumber(ARGV[1]) or meta[2] ~= ARGV[2] then return 0 end
local n, bytes = tonumber(meta[3]), tonumber(meta[4])
local max_items, max_bytes = tonumber(ARGV[4]), tonumber(ARGV[5])
local capped = false
for i = 7, #ARGV, 3 do
  local value = ARGV[i + 2]
  if n + 1 > max_items or bytes + #value > max_bytes then
    capped = true
    break
  end
  redis.call('ZADD', KEYS[2], 0, ARGV[i])
  redis.call('HSET', KEYS[3], ARGV[i + 1], value)
  n = n + 1
  bytes = bytes + #value
end
redis.call('HSET', KEYS[1], 'n', n, 'bytes', bytes)
local done = capped or ARGV[6] == '1'
if done then
  redis.call('HDEL', KEYS[1], 'fill')
  if not capped then redis.call('HSET', KEYS[1], 'full', 1) end
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
if done then return 0 end
return 1
";

/// KEYS: enrichment hash. ARGV: ttl seconds, max entries, then id, value pairs. A hash that
/// would outgrow the cap starts over: entries are cheap to fetch again.
const REMEMBER_ENRICHMENTS: &str = r"
if redis.call('HLEN', KEYS[1]) + (#ARGV - 2) / 2 > tonumber(ARGV[2]) then redis.call('DEL', KEYS[1]) end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
";

/// The cache's bounds: on time, on each user's entry, on how long an entry lives.
#[derive(Debug, Clone)]
pub struct CachePolicy {
    /// Bound on connecting and on each reply (`REDIS_TIMEOUT_MS`, default 200): well under
    /// any function timeout, so a slow Redis costs a bounded delay before the database answers.
    pub timeout: Duration,
    /// Lifetime of a user's entry after its last write (`CACHE_TTL_SECONDS`, default 3600).
    pub ttl: Duration,
    /// The most favorites one user's entry holds (`CACHE_MAX_ITEMS`, default 1000, at most
    /// 5000): the first ones in listing order; the rest of a longer list is read from the database.
    pub max_items: usize,
    /// The most bytes of favorites one user's entry holds (`CACHE_MAX_BYTES`, default 1 MiB).
    pub max_bytes: usize,
    /// How long an enrichment result is used (`ENRICHMENT_CACHE_TTL_SECONDS`, default 300):
    /// the metadata belongs to another service and changes there.
    pub enrichment_ttl: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(200),
            ttl: Duration::from_secs(3_600),
            max_items: 1_000,
            max_bytes: 1 << 20,
            enrichment_ttl: Duration::from_secs(300),
        }
    }
}

pub struct RedisFavoriteCache {
    connection: ConnectionManager,
    ttl_seconds: u64,
    enrichment_ttl_seconds: u64,
    max_items: usize,
    max_bytes: usize,
    page: Script,
    apply: Script,
    start_fill: Script,
    fill: Script,
    remember_enrichments: Script,
}

impl RedisFavoriteCache {
    /// Builds the client once per cold start without connecting: the connection opens on the
    /// first use and is re-opened in the background after a failure, so a Redis that is down
    /// at cold start costs nothing but cache misses. `rediss://` URLs use TLS (rustls with the
    /// web PKI roots, which include the Amazon roots ElastiCache's certificates chain to, or
    /// only the CAs of `REDIS_CA_BUNDLE`).
    pub fn new(settings: &CacheSettings) -> anyhow::Result<Self> {
        let config = &settings.policy;
        // TCP_NODELAY, which redis leaves off: the connection is shared by concurrent calls,
        // and with Nagle's algorithm on, a command written while an earlier one is still
        // unacknowledged waits for that ACK, which the server may delay by up to 40 ms.
        let info = settings
            .url
            .expose_secret()
            .into_connection_info()
            .context("parsing REDIS_URL")?
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        let client = match &settings.ca_bundle {
            None => redis::Client::open(info),
            Some(path) => {
                let root_cert =
                    std::fs::read(path).with_context(|| format!("reading REDIS_CA_BUNDLE {}", path.display()))?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                redis::Client::build_with_tls(info, certificates)
            }
        }
        .context("building the Redis client")?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let connection = ConnectionManager::new_lazy_with_config(client, manager)
            .context("building the Redis connection manager")?;
        Ok(Self {
            connection,
            ttl_seconds: config.ttl.as_secs(),
            enrichment_ttl_seconds: config.enrichment_ttl.as_secs(),
            max_items: config.max_items,
            max_bytes: config.max_bytes,
            page: Script::new(PAGE),
            apply: Script::new(APPLY),
            start_fill: Script::new(START_FILL),
            fill: Script::new(FILL),
            remember_enrichments: Script::new(REMEMBER_ENRICHMENTS),
        })
    }

    fn enrichment_key(user: UserId) -> String {
        format!("fav:{{{}}}:enrichment", user.as_uuid())
    }

    /// The user's three entry keys, in the order every entry script takes them: meta, order, items.
    fn entry_keys(user: UserId) -> [String; 3] {
        let tag = user.as_uuid();
        ["meta", "order", "items"].map(|part| format!("fav:{{{tag}}}:{part}"))
    }

    /// An invocation of one of the entry scripts, with the user's entry keys.
    fn entry_script<'a>(script: &'a Script, user: UserId) -> ScriptInvocation<'a> {
        let [meta, order, items] = Self::entry_keys(user);
        let mut invocation = script.key(meta);
        invocation.key(order).key(items);
        invocation
    }
}

/// The member a favorite has in the order set; its first [`TIME_DIGITS`] bytes prefix the
/// stored value too, so a removal by id finds the member.
fn sort_key(position: &ListPosition) -> String {
    format!(
        "{:0width$}:{}",
        position.created_at.timestamp_micros(),
        position.id,
        width = TIME_DIGITS
    )
}

fn stored_value(row: &ListedFavorite) -> String {
    let key = sort_key(&row.position);
    format!("{}{}", &key[..TIME_DIGITS], row.json)
}

fn row_from(member: &[u8], value: &[u8]) -> anyhow::Result<ListedFavorite> {
    let member = std::str::from_utf8(member).context("a cached sort key is not UTF-8")?;
    let value = std::str::from_utf8(value).context("a cached favorite is not UTF-8")?;
    let (micros, id) = member
        .split_at_checked(TIME_DIGITS)
        .and_then(|(micros, rest)| Some((micros, rest.strip_prefix(':')?)))
        .context("a cached sort key has the wrong shape")?;
    let micros: i64 = micros.parse().context("a cached sort key has no time")?;
    let created_at = chrono::DateTime::from_timestamp_micros(micros).context("a cached time is out of range")?;
    let json = value
        .get(TIME_DIGITS..)
        .filter(|json| json.starts_with('{'))
        .context("a cached favorite has the wrong shape")?;
    Ok(ListedFavorite {
        position: ListPosition {
            created_at,
            id: id.to_string(),
        },
        json: json.to_string(),
    })
}

fn bytes_of(value: &Value) -> anyhow::Result<&[u8]> {
    match value {
        Value::BulkString(bytes) => Ok(bytes),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        other => anyhow::bail!("unexpected reply element from the cache: {other:?}"),
    }
}

fn number_of(value: &Value) -> anyhow::Result<u64> {
    std::str::from_utf8(bytes_of(value)?)?
        .parse()
        .context("a cached number does not parse")
}

#[async_trait]
impl FavoriteCache for RedisFavoriteCache {
    async fn page(&self, user: UserId, query: &ListQuery) -> anyhow::Result<Option<CachedPage>> {
        // The entry is the unfiltered list: a filtered page is never in it.
        if !query.filter.is_everything() {
            return Ok(None);
        }
        let start = match &query.after {
            Some(after) => format!("({}", sort_key(after)),
            None => "+".to_string(),
        };
        let count: i64 = query.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let reply: Vec<Value> = Self::entry_script(&self.page, user)
            .arg(start)
            .arg(query.offset)
            .arg(count)
            .invoke_async(&mut self.connection.clone())
            .await
            .context("reading a page from the cache")?;
        let [version, full, pairs @ ..] = reply.as_slice() else {
            return Ok(None);
        };
        if pairs.len() % 2 != 0 {
            anyhow::bail!("the cache answered a page with an odd number of elements");
        }
        let version = FavoritesVersion(number_of(version)?);
        let full = number_of(full)? == 1;
        let rows = pairs
            .chunks_exact(2)
            .map(|pair| row_from(bytes_of(&pair[0])?, bytes_of(&pair[1])?))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // All the rows asked for were inside the prefix, or the prefix is the whole list.
        let complete = full || query.limit.is_some_and(|limit| rows.len() as u64 == limit);
        Ok(complete.then_some(CachedPage { version, rows }))
    }

    async fn apply(&self, user: UserId, version: FavoritesVersion, change: CacheChange<'_>) -> anyhow::Result<()> {
        let written = |kind, row: &ListedFavorite| {
            (
                kind,
                row.position.id.clone(),
                sort_key(&row.position),
                stored_value(row),
            )
        };
        let (kind, id, member, value) = match change {
            CacheChange::Added(row) => written("add", row),
            CacheChange::Updated(row) => written("update", row),
            CacheChange::Removed(id) => ("remove", id.as_str().to_string(), String::new(), String::new()),
        };
        let outcome: String = Self::entry_script(&self.apply, user)
            .arg(version.0)
            .arg(kind)
            .arg(id)
            .arg(member)
            .arg(value)
            .arg(self.ttl_seconds)
            .arg(self.max_items)
            .arg(self.max_bytes)
            .invoke_async(&mut self.connection.clone())
            .await
            .context("writing a change through to the cache")?;
        tracing::debug!(kind, version = version.0, outcome, "cache write-through");
        Ok(())
    }

    async fn start_fill(&self, user: UserId, version: FavoritesVersion) -> anyhow::Result<Option<FillTicket>> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let started: i64 = Self::entry_script(&self.start_fill, user)
            .arg(version.0)
            .arg(&token)
            .arg(self.ttl_seconds)
            .invoke_async(&mut self.connection.clone())
            .await
            .context("starting a cache fill")?;
        Ok((started == 1).then_some(FillTicket { version, token }))
    }

    async fn fill(
        &self,
        user: UserId,
        ticket: &FillTicket,
        rows: &[ListedFavorite],
        end_of_list: bool,
    ) -> anyhow::Result<bool> {
        let mut invocation = Self::entry_script(&self.fill, user);
        invocation
            .arg(ticket.version.0)
            .arg(&ticket.token)
            .arg(self.ttl_seconds)
            .arg(self.max_items)
            .arg(self.max_bytes)
            .arg(if end_of_list { "1" } else { "0" });
        for row in rows {
            invocation
                .arg(sort_key(&row.position))
                .arg(&row.position.id)
                .arg(stored_value(row));
        }
        let go_on: i64 = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .context("filling the cache")?;
        Ok(go_on == 1)
    }

    async fn forget(&self, user: UserId) -> anyhow::Result<()> {
        let _: i64 = redis::cmd("DEL")
            .arg(&Self::entry_keys(user))
            .arg(Self::enrichment_key(user))
            .query_async(&mut self.connection.clone())
            .await
            .context("dropping a user's cache entry")?;
        Ok(())
    }

    fn max_items(&self) -> usize {
        self.max_items
    }
}

/// Enrichment entries are `<unix seconds when fetched>:<metadata JSON or null>`; a reader
/// takes only those younger than the TTL (a hash's fields have no TTL of their own).
#[async_trait]
impl EnrichmentCache for RedisFavoriteCache {
    async fn enrichments(&self, user: UserId, ids: &[String]) -> anyhow::Result<HashMap<String, CachedEnrichment>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(Self::enrichment_key(user))
            .arg(ids)
            .query_async(&mut self.connection.clone())
            .await
            .context("reading cached enrichments")?;
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(self.enrichment_ttl_seconds).unwrap_or(i64::MAX);
        let mut fresh = HashMap::new();
        for (id, value) in ids.iter().zip(values) {
            let Some(value) = value else { continue };
            let (at, json) = value
                .split_once(':')
                .context("a cached enrichment has the wrong shape")?;
            let at: i64 = at.parse().context("a cached enrichment has no time")?;
            if now - at < ttl {
                let metadata: serde_json::Value =
                    serde_json::from_str(json).context("a cached enrichment is not JSON")?;
                fresh.insert(id.clone(), (!metadata.is_null()).then_some(metadata));
            }
        }
        Ok(fresh)
    }

    async fn remember_enrichments(&self, user: UserId, entries: &[(String, CachedEnrichment)]) -> anyhow::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let now = chrono::Utc::now().timestamp();
        let key = Self::enrichment_key(user);
        let mut invocation = self.remember_enrichments.key(&key);
        invocation.arg(self.enrichment_ttl_seconds).arg(self.max_items);
        for (id, metadata) in entries {
            let json = metadata.as_ref().map_or_else(|| "null".to_string(), |m| m.to_string());
            invocation.arg(id).arg(format!("{now}:{json}"));
        }
        let _: i64 = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .context("caching enrichments")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_order_like_the_listing() {
        let at = |micros| chrono::DateTime::from_timestamp_micros(micros).unwrap();
        let key = |micros, id: &str| {
            sort_key(&ListPosition {
                created_at: at(micros),
                id: id.into(),
            })
        };
        // Later first, then the greater id first, bytewise: reverse byte order of the keys.
        let mut keys = vec![key(5, "a"), key(1_000_000, "a"), key(5, "ab"), key(5, "B")];
        keys.sort();
        keys.reverse();
        assert_eq!(keys, vec![key(1_000_000, "a"), key(5, "ab"), key(5, "a"), key(5, "B")]);
    }

    #[test]
    fn a_stored_row_reads_back_as_it_was() {
        let row = ListedFavorite {
            position: ListPosition {
                created_at: chrono::DateTime::from_timestamp_micros(1_763_600_000_123_456).unwrap(),
                id: "chart:1".into(),
            },
            json: r#"{"id":"chart:1"}"#.into(),
        };
        let back = row_from(sort_key(&row.position).as_bytes(), stored_value(&row).as_bytes()).unwrap();
        assert_eq!(back.position, row.position);
        assert_eq!(back.json, row.json);
    }
}
