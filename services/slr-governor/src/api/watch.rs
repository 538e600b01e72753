//! WatchInstances and WatchLinkedRoles: server streams of the change log.
//!
//! A watch validates its request and reads its first page in the handler,
//! so a bad parent, an invisible account or an expired resume token is the
//! RPC's status. Then one task per stream pumps the log: it reads the
//! changes after its cursor (scoped by the caller's context, as List),
//! sends them into a bounded channel, and waits for the log's head to pass
//! its cursor, a bookmark's time, the end of the stream's life or the
//! server's drain. One task per process reads the head ([`Watchers::head`])
//! when the store signals a change (Postgres `LISTEN`, every replica's
//! commits; SQLite, a poll of the file), and polls it as a fallback, so
//! polling costs one query per tick whatever the number of streams.
//!
//! Bounds: at most [`WatchSettings::max_watchers`] streams per process
//! (RESOURCE_EXHAUSTED `TOO_MANY_WATCHERS`); a watcher whose buffer stays
//! full for [`WatchSettings::stall`] (it stopped reading) is cut off with
//! RESOURCE_EXHAUSTED `WATCHER_TOO_SLOW`, its buffered messages dropped:
//! it resumes from the last token it read, so it loses nothing. The
//! admission layer's request timeout and concurrency limit do not cover a
//! stream's body (they end when the handler answers), so these are the
//! stream's own.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use slrgov_domain::filter::InstanceFilter;
use slrgov_domain::names::{AccountSelector, InstanceKey};
use slrgov_domain::{Error, FieldError, Reason, RequestContext, Result};
use slrgov_proto::slrgov::v1 as pb;
use slrgov_store::page_token::PageTokenKey;
use slrgov_store::{ChangeCursor, Store};
use tokio::sync::{mpsc, watch};
use tonic::Status;

use crate::convert;
use crate::status::to_status;

/// A watch stream's messages, as tonic serves them.
pub type WatchStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// After a signal, the log's head is read this often for [`EAGER_WINDOW`]: on
/// Postgres a change is withheld while an older transaction (any write,
/// e.g. a worker's claim) is still open, and that transaction's commit
/// sends no notification when it changed no instance or role.
const EAGER_POLL: Duration = Duration::from_millis(200);
/// How long after a signal the head is read every [`EAGER_POLL`].
const EAGER_WINDOW: Duration = Duration::from_secs(2);

/// The limits and rhythm of watch streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSettings {
    /// Streams one process serves at once.
    pub max_watchers: usize,
    /// Messages buffered per stream.
    pub buffer: usize,
    /// How long a stream's buffer may stay full before it is cut off.
    pub stall: Duration,
    /// A BOOKMARK after this long without a message.
    pub heartbeat: Duration,
    /// How long a stream lives; it then ends OK, to be resumed.
    pub lifetime: Duration,
    /// The log's head is read at least this often, signal or not.
    pub poll: Duration,
    /// Changes read per page.
    pub page: u32,
    /// How long the change log keeps a change (the worker's sweep).
    pub retention: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            max_watchers: 1000,
            buffer: 64,
            stall: Duration::from_secs(10),
            heartbeat: Duration::from_secs(30),
            lifetime: Duration::from_secs(30 * 60),
            poll: Duration::from_secs(5),
            page: 100,
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// The streams of one process: their count, the drain signal, and the
/// log's head as the process's one head reader last saw it.
#[derive(Debug)]
pub struct Watchers {
    settings: WatchSettings,
    active: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    head: std::sync::OnceLock<watch::Receiver<ChangeCursor>>,
}

impl Watchers {
    /// Streams served with `settings`.
    pub fn new(settings: WatchSettings) -> Self {
        Watchers {
            settings,
            active: Arc::new(AtomicUsize::new(0)),
            stop: watch::channel(false).0,
            head: std::sync::OnceLock::new(),
        }
    }

    /// The log's head, kept by one task per process (started by the first
    /// stream): it reads the head on the store's signal, then every
    /// [`EAGER_POLL`] for [`EAGER_WINDOW`], and every `poll` otherwise, and
    /// only while a stream is open. A stream reads the log only when the
    /// head passes its cursor, so N streams cost one query per tick, not N.
    fn head(&self, store: &Arc<dyn Store>, from: ChangeCursor) -> watch::Receiver<ChangeCursor> {
        self.head
            .get_or_init(|| {
                let (tx, rx) = watch::channel(from);
                tokio::spawn(read_head(
                    store.clone(),
                    tx,
                    self.active.clone(),
                    self.stop.subscribe(),
                    self.settings.poll,
                ));
                rx
            })
            .clone()
    }

    /// Ends every stream (the server is draining): each ends OK, and its
    /// client resumes on another replica with its last token.
    pub fn stop_all(&self) {
        self.stop.send_replace(true);
    }

    /// Streams open now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Takes a stream's place, or RESOURCE_EXHAUSTED when all are taken.
    fn admit(&self) -> Result<Slot> {
        let taken = self.active.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.active.clone());
        if taken >= self.settings.max_watchers {
            drop(slot);
            return Err(Error::resource_exhausted(
                Reason::TooManyWatchers,
                format!(
                    "this server holds its limit of {} watch streams: retry shortly, \
                     or on another replica",
                    self.settings.max_watchers
                ),
                Duration::from_secs(5),
            ));
        }
        Ok(slot)
    }
}

/// The process's head reader (see [`Watchers::head`]). A failed read is
/// logged and tried again at the next tick; the streams then wait, never
/// skip.
async fn read_head(
    store: Arc<dyn Store>,
    head: watch::Sender<ChangeCursor>,
    active: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
    poll: Duration,
) {
    let ctx = RequestContext::for_worker("watch-head");
    let mut signal = store.change_signal();
    let mut eager_until = tokio::time::Instant::now();
    loop {
        if active.load(Ordering::Acquire) > 0 {
            match store.change_head(&ctx).await {
                Ok(now) => {
                    head.send_if_modified(|seen| {
                        let moved = now > *seen;
                        if moved {
                            *seen = now;
                        }
                        moved
                    });
                }
                Err(error) => tracing::warn!(%error, "cannot read the change log's head"),
            }
        }
        let wait = if tokio::time::Instant::now() < eager_until {
            EAGER_POLL
        } else {
            poll
        };
        tokio::select! {
            changed = signal.changed() => {
                if changed.is_err() {
                    return;
                }
                eager_until = tokio::time::Instant::now() + EAGER_WINDOW;
            }
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {
                if *stop.borrow() {
                    return;
                }
            }
        }
    }
}

/// A stream's place among the watchers, given back when its task ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A resume token: the position `(tx, seq)` sealed with the page-token
/// key ([`PageTokenKey::seal_position`]): opaque, tamper-evident, and
/// encrypted, so it tells a caller nothing about other accounts' changes.
pub fn resume_token(keys: &PageTokenKey, cursor: ChangeCursor) -> String {
    keys.seal_position(cursor.tx, cursor.seq)
}

/// Opens a resume token; the empty string means "from now" (`None`).
pub fn parse_resume_token(
    keys: &PageTokenKey,
    value: &str,
) -> Result<Option<ChangeCursor>, FieldError> {
    if value.is_empty() {
        return Ok(None);
    }
    keys.open_position(value)
        .map(|(tx, seq)| Some(ChangeCursor { tx, seq }))
        .ok_or_else(|| FieldError::new("is not a resume token of this service's watch streams"))
}

/// What a stream reads and how its messages look.
#[async_trait]
pub trait Feed: Send + Sync + 'static {
    /// The stream's message.
    type Message: Send + 'static;

    /// The messages after `after` (at most `limit` changes read, merged per
    /// resource, filtered), and where the next read starts.
    async fn read(
        &self,
        store: &dyn Store,
        ctx: &RequestContext,
        after: ChangeCursor,
        limit: u32,
    ) -> Result<(Vec<Self::Message>, ChangeCursor)>;

    /// A BOOKMARK at `cursor`.
    fn bookmark(&self, cursor: ChangeCursor) -> Self::Message;
}

/// Keeps the last change of each resource in a page, in the order of
/// those last changes.
fn merge<T>(changes: Vec<T>, key: impl Fn(&T) -> InstanceKey) -> Vec<T> {
    let mut last: HashMap<InstanceKey, usize> = HashMap::new();
    for (i, change) in changes.iter().enumerate() {
        last.insert(key(change), i);
    }
    changes
        .into_iter()
        .enumerate()
        .filter(|(i, change)| last.get(&key(change)) == Some(i))
        .map(|(_, change)| change)
        .collect()
}

fn now() -> prost_types::Timestamp {
    convert::timestamp(chrono::Utc::now())
}

/// WatchInstances: the instance changes of a parent that pass a filter.
#[derive(Debug)]
pub struct InstanceFeed {
    /// The account, or every visible one.
    pub parent: AccountSelector,
    /// Which instances (after the change) are sent.
    pub filter: InstanceFilter,
    /// The key that seals the resume tokens.
    pub tokens: PageTokenKey,
}

#[async_trait]
impl Feed for InstanceFeed {
    type Message = pb::WatchInstancesResponse;

    async fn read(
        &self,
        store: &dyn Store,
        ctx: &RequestContext,
        after: ChangeCursor,
        limit: u32,
    ) -> Result<(Vec<Self::Message>, ChangeCursor)> {
        use pb::watch_instances_response::ChangeType;
        let page = store
            .instance_changes(ctx, &self.parent, after, limit)
            .await?;
        let messages = merge(page.changes, |c| c.key.clone())
            .into_iter()
            .filter_map(|change| {
                let (instance, change_type) = match &change.instance {
                    Some(instance) if !self.filter.matches(instance) => return None,
                    Some(instance) => (convert::instance(instance), ChangeType::Changed),
                    None => (
                        pb::Instance {
                            name: change.key.name(),
                            ..Default::default()
                        },
                        ChangeType::Deleted,
                    ),
                };
                Some(pb::WatchInstancesResponse {
                    instance: Some(instance),
                    resume_token: resume_token(&self.tokens, change.cursor),
                    change_type: change_type as i32,
                    change_time: Some(convert::timestamp(change.at)),
                })
            })
            .collect();
        Ok((messages, page.next))
    }

    fn bookmark(&self, cursor: ChangeCursor) -> Self::Message {
        pb::WatchInstancesResponse {
            instance: None,
            resume_token: resume_token(&self.tokens, cursor),
            change_type: pb::watch_instances_response::ChangeType::Bookmark as i32,
            change_time: Some(now()),
        }
    }
}

/// WatchLinkedRoles: the linked-role changes of a parent.
#[derive(Debug)]
pub struct LinkedRoleFeed {
    /// The account, or every visible one.
    pub parent: AccountSelector,
    /// The key that seals the resume tokens.
    pub tokens: PageTokenKey,
}

#[async_trait]
impl Feed for LinkedRoleFeed {
    type Message = pb::WatchLinkedRolesResponse;

    async fn read(
        &self,
        store: &dyn Store,
        ctx: &RequestContext,
        after: ChangeCursor,
        limit: u32,
    ) -> Result<(Vec<Self::Message>, ChangeCursor)> {
        use pb::watch_linked_roles_response::ChangeType;
        let page = store
            .linked_role_changes(ctx, &self.parent, after, limit)
            .await?;
        let messages = merge(page.changes, |c| c.key.clone())
            .into_iter()
            .map(|change| {
                let (role, change_type) = match &change.linked_role {
                    Some(role) => (convert::linked_role(role), ChangeType::Changed),
                    None => (
                        pb::LinkedRole {
                            name: change.key.linked_role_name(),
                            ..Default::default()
                        },
                        ChangeType::Deleted,
                    ),
                };
                pb::WatchLinkedRolesResponse {
                    linked_role: Some(role),
                    resume_token: resume_token(&self.tokens, change.cursor),
                    change_type: change_type as i32,
                    change_time: Some(convert::timestamp(change.at)),
                }
            })
            .collect();
        Ok((messages, page.next))
    }

    fn bookmark(&self, cursor: ChangeCursor) -> Self::Message {
        pb::WatchLinkedRolesResponse {
            linked_role: None,
            resume_token: resume_token(&self.tokens, cursor),
            change_type: pb::watch_linked_roles_response::ChangeType::Bookmark as i32,
            change_time: Some(now()),
        }
    }
}

/// Opens a stream of `feed` for the caller of `ctx`, from `from` (a resume
/// token's cursor) or from now. Errors before the stream starts (the
/// parent not visible, the token expired, too many watchers) are returned.
pub async fn open<F: Feed>(
    watchers: &Watchers,
    store: Arc<dyn Store>,
    ctx: RequestContext,
    feed: F,
    from: Option<ChangeCursor>,
) -> Result<WatchStream<F::Message>> {
    let slot = watchers.admit()?;
    let settings = watchers.settings;
    // The stream outlives the request's deadline.
    let ctx = ctx.with_deadline(None);
    let start = match from {
        Some(cursor) => cursor,
        None => store.change_head(&ctx).await?,
    };
    // The first read checks the parent and the token now, as the status.
    let (first, cursor) = feed
        .read(store.as_ref(), &ctx, start, settings.page)
        .await?;
    let (tx, rx) = mpsc::channel(settings.buffer);
    let cut: Arc<Mutex<Option<Status>>> = Arc::default();
    let head = watchers.head(&store, cursor);
    let pump = Pump {
        feed,
        head,
        store,
        ctx,
        settings,
        tx,
        cut: cut.clone(),
        stop: watchers.stop.subscribe(),
        _slot: slot,
    };
    let span = pump.ctx.span.clone();
    tokio::spawn(tracing::Instrument::instrument(
        pump.run(start, first, cursor),
        span,
    ));
    Ok(Box::pin(futures::stream::unfold(
        (rx, cut, false),
        |(mut rx, cut, done)| async move {
            if done {
                return None;
            }
            // A cut-off watcher gets its error before anything buffered.
            let taken = cut.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(status) = taken {
                return Some((Err(status), (rx, cut, true)));
            }
            match rx.recv().await {
                Some(message) => Some((Ok(message), (rx, cut, false))),
                None => {
                    let taken = cut.lock().unwrap_or_else(|e| e.into_inner()).take();
                    taken.map(|status| (Err(status), (rx, cut, true)))
                }
            }
        },
    )))
}

/// One stream's task.
struct Pump<F: Feed> {
    feed: F,
    head: watch::Receiver<ChangeCursor>,
    store: Arc<dyn Store>,
    ctx: RequestContext,
    settings: WatchSettings,
    tx: mpsc::Sender<F::Message>,
    cut: Arc<Mutex<Option<Status>>>,
    stop: watch::Receiver<bool>,
    _slot: Slot,
}

/// Why a stream's task ends.
enum End {
    /// The client went away, the stream's life is over, or the server
    /// drains: nothing to say.
    Quiet,
    /// The stream ends with this status.
    Status(Status),
}

impl<F: Feed> Pump<F> {
    async fn run(mut self, start: ChangeCursor, first: Vec<F::Message>, cursor: ChangeCursor) {
        let end = self.serve(start, first, cursor).await;
        match end {
            End::Quiet => {}
            End::Status(status) => {
                tracing::info!(
                    code = ?status.code(),
                    message = status.message(),
                    "watch stream ended"
                );
                *self.cut.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
            }
        }
    }

    /// Sends one message, or gives up when the watcher stops reading.
    async fn send(&self, message: F::Message) -> Result<(), End> {
        match self.tx.send_timeout(message, self.settings.stall).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(End::Quiet),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(End::Status(to_status(
                Error::resource_exhausted(
                    Reason::WatcherTooSlow,
                    format!(
                        "the watcher did not read its stream for {} s: watch again with the \
                         resume token of the last message read",
                        self.settings.stall.as_secs()
                    ),
                    Duration::from_secs(1),
                ),
                &self.ctx.correlation_id,
            ))),
        }
    }

    async fn serve(
        &mut self,
        start: ChangeCursor,
        first: Vec<F::Message>,
        mut cursor: ChangeCursor,
    ) -> End {
        let born = tokio::time::Instant::now();
        let mut head = self.head.clone();
        let mut stop = self.stop.clone();
        if let Err(end) = self.send(self.feed.bookmark(start)).await {
            return end;
        }
        let mut pending = Some(first);
        let mut last_sent = tokio::time::Instant::now();
        let mut chased = cursor;
        loop {
            if *stop.borrow() {
                return End::Quiet;
            }
            // Drain the log after the cursor. A backlog whose changes are
            // all filtered out sends nothing, so the checks of the wait
            // below are made here too: a client gone, a drain, the end of
            // the stream's life.
            loop {
                if self.tx.is_closed()
                    || *stop.borrow()
                    || tokio::time::Instant::now() >= born + self.settings.lifetime
                {
                    return End::Quiet;
                }
                let messages = match pending.take() {
                    Some(messages) => messages,
                    None => {
                        match self
                            .feed
                            .read(self.store.as_ref(), &self.ctx, cursor, self.settings.page)
                            .await
                        {
                            Ok((messages, next)) => {
                                // Read until a read no longer moves the
                                // cursor: the log is drained.
                                let advanced = next != cursor;
                                cursor = next;
                                if !advanced {
                                    break;
                                }
                                messages
                            }
                            Err(error) => {
                                return End::Status(to_status(error, &self.ctx.correlation_id));
                            }
                        }
                    }
                };
                for message in messages {
                    if let Err(end) = self.send(message).await {
                        return end;
                    }
                    last_sent = tokio::time::Instant::now();
                }
            }
            let heartbeat = last_sent + self.settings.heartbeat;
            let lifetime = born + self.settings.lifetime;
            // Drained: wait for the head to pass the cursor (a change of
            // any account: the read then moves on past what is not ours).
            // A head already past it is chased once, never in a loop.
            let now = *head.borrow_and_update();
            if now > cursor && now != chased {
                chased = now;
                continue;
            }
            tokio::select! {
                changed = head.changed() => {
                    if changed.is_err() {
                        // The head reader is gone (the store shut down).
                        return End::Quiet;
                    }
                }
                () = tokio::time::sleep_until(heartbeat) => {
                    if let Err(end) = self.send(self.feed.bookmark(cursor)).await {
                        return end;
                    }
                    last_sent = tokio::time::Instant::now();
                }
                () = tokio::time::sleep_until(lifetime) => return End::Quiet,
                _ = stop.changed() => return End::Quiet,
                () = self.tx.closed() => return End::Quiet,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_tokens_round_trip_and_refuse_anything_else() {
        let keys = PageTokenKey::new(vec![3; 32]);
        for cursor in [
            ChangeCursor::default(),
            ChangeCursor { tx: 0, seq: 17 },
            ChangeCursor {
                tx: 1 << 40,
                seq: i64::MAX,
            },
        ] {
            assert_eq!(
                parse_resume_token(&keys, &resume_token(&keys, cursor)),
                Ok(Some(cursor))
            );
        }
        assert_eq!(parse_resume_token(&keys, ""), Ok(None));
        let other = resume_token(&PageTokenKey::new(vec![4; 32]), ChangeCursor::default());
        for bad in ["w1.1.2", "w2.1.2", "w2.", "junk", other.as_str()] {
            assert!(
                parse_resume_token(&keys, bad).is_err(),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn a_page_keeps_the_last_change_of_each_resource_in_order() {
        let key = |i: &str| InstanceKey {
            account_id: slrgov_domain::types::AccountId::parse("111111111111").expect("account"),
            instance_id: slrgov_domain::types::InstanceId::parse(i).expect("instance"),
        };
        let a = key("11111111-1111-4111-8111-111111111111");
        let b = key("22222222-2222-4222-8222-222222222222");
        let changes = vec![(a.clone(), 1), (b.clone(), 2), (a.clone(), 3)];
        let merged = merge(changes, |(k, _)| k.clone());
        assert_eq!(merged, vec![(b, 2), (a, 3)]);
    }

    #[test]
    fn watchers_beyond_the_limit_are_refused_and_slots_come_back() {
        let watchers = Watchers::new(WatchSettings {
            max_watchers: 2,
            ..WatchSettings::default()
        });
        let one = watchers.admit().expect("first");
        let _two = watchers.admit().expect("second");
        let refused = watchers.admit().err().expect("third is refused");
        assert_eq!(refused.reason, Reason::TooManyWatchers);
        assert_eq!(watchers.active(), 2);
        drop(one);
        assert_eq!(watchers.active(), 1);
        watchers.admit().expect("a slot came back");
    }
}
