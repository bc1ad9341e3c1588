//! Retained messages: rmqtt's in-memory retain tree, without a timer.
//!
//! This is what the `rmqtt-retainer` plugin's RAM store did (its defaults: no count limit, a
//! 1 MiB payload cap, the publisher's message expiry), minus its task that swept expired
//! messages every 10 s whether or not anything was retained. An expired message is never
//! delivered (a read skips it); it is removed by the next store after [`SWEEP_EVERY`], so memory
//! still follows what clients retain (bounded per login by `limits.maxRetainedTopics` and
//! `limits.maxRetainedBytes`, checked before a message gets here), and an idle hub does not
//! wake up for it.

use async_trait::async_trait;
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::types::{Retain, TopicFilter, TopicName};
use rmqtt::utils::StatsMergeMode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The largest payload kept (the retainer plugin's default).
const MAX_PAYLOAD: usize = 1024 * 1024;
/// Expired messages are swept by a store at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The retain store registered with the broker.
pub(crate) struct RamRetain {
    inner: DefaultRetainStorage,
    swept: Mutex<Instant>,
}

impl RamRetain {
    pub fn new() -> RamRetain {
        RamRetain {
            inner: DefaultRetainStorage::new(),
            swept: Mutex::new(Instant::now()),
        }
    }

    /// Installs the store in the broker.
    pub async fn register(scx: &rmqtt::context::ServerContext) {
        *scx.extends.retain_mut().await = Box::new(RamRetain::new());
    }

    fn sweep_due(&self) -> bool {
        let mut at = self.swept.lock().unwrap_or_else(|p| p.into_inner());
        if at.elapsed() < SWEEP_EVERY {
            return false;
        }
        *at = Instant::now();
        true
    }
}

#[async_trait]
impl RetainStorage for RamRetain {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: Retain,
        expiry_interval: Option<Duration>,
    ) -> rmqtt::Result<()> {
        if retain.publish.payload.len() > MAX_PAYLOAD {
            tracing::warn!(%topic, "retained message over 1 MiB not kept");
            return Ok(());
        }
        if self.sweep_due() {
            let n = self.inner.remove_expired_messages().await;
            if n > 0 {
                tracing::debug!(removed = n, "expired retained messages removed");
            }
        }
        self.inner
            .set_with_timeout(topic, retain, expiry_interval)
            .await
    }

    async fn get(&self, topic_filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        self.inner.get_message(topic_filter).await
    }

    async fn get_all_paginated(
        &self,
        offset: usize,
        limit: usize,
    ) -> rmqtt::Result<(Vec<(TopicName, Retain, Option<Duration>)>, bool)> {
        self.inner.get_all_paginated(offset, limit).await
    }

    async fn count(&self) -> isize {
        self.inner.count().await
    }

    async fn max(&self) -> isize {
        self.inner.max().await
    }

    fn stats_merge_mode(&self) -> StatsMergeMode {
        StatsMergeMode::Max
    }
}
