//! Webhook subscriptions and deliveries: the transactional outbox.
//!
//! A delivery row is written by the same write job as the change that caused its event (see the
//! node's `app::webhooks`), so an acknowledged change always has its deliveries and a failed one
//! never does. Each delivery is indexed twice: in its subscription's pending queue (by due time,
//! removed once delivered or dead-lettered) and in its subscription's log (by creation time).

use uuid::Uuid;

use crate::error::StoreError;
use crate::keys;
use crate::records::{decode, DeliveryStatus, WebhookDelivery, WebhookSubscription};
use crate::store::Store;
use crate::tx::Tx;

/// One page of a subscription's delivery log, newest first, and how many match in all.
#[derive(Debug, Clone, Default)]
pub struct DeliveryPage {
    /// The page.
    pub items: Vec<WebhookDelivery>,
    /// Deliveries matching the filter.
    pub total: usize,
}

fn queued(d: &WebhookDelivery) -> Option<i64> {
    match d.status {
        DeliveryStatus::Pending | DeliveryStatus::Failed => d.next_retry_at,
        DeliveryStatus::Delivered | DeliveryStatus::DeadLetter => None,
    }
}

impl Tx<'_> {
    /// A webhook subscription by id.
    pub fn get_webhook(&self, id: &Uuid) -> Result<Option<WebhookSubscription>, StoreError> {
        self.get(&keys::webhook(id))
    }

    /// An organization's subscriptions, as this job sees them (the fan-out of an event reads
    /// them inside the write that records it).
    pub fn list_org_webhooks(&self, org: &Uuid) -> Result<Vec<WebhookSubscription>, StoreError> {
        let mut out = Vec::new();
        for (k, _) in self.scan_prefix(&keys::webhook_by_org_prefix(org), usize::MAX)? {
            if let Some(s) = keys::uuid_suffix(&k)
                .map(|id| self.get_webhook(&id))
                .transpose()?
                .flatten()
            {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Writes a subscription and its organization index (the organization never changes).
    pub fn put_webhook(&mut self, sub: &WebhookSubscription) {
        self.put(keys::webhook_by_org(&sub.org_id, &sub.id), &sub.id);
        self.put(keys::webhook(&sub.id), sub);
    }

    /// Removes a subscription with its pending queue and its delivery log.
    pub fn delete_webhook(&mut self, sub: &WebhookSubscription) -> Result<(), StoreError> {
        for (k, _) in self.scan_prefix(&keys::webhook_pending_prefix(&sub.id), usize::MAX)? {
            self.delete(k);
        }
        for (k, _) in self.scan_prefix(&keys::webhook_log_prefix(&sub.id), usize::MAX)? {
            if let Some(id) = keys::uuid_suffix(&k) {
                self.delete(keys::webhook_delivery(&id));
            }
            self.delete(k);
        }
        self.delete(keys::webhook_by_org(&sub.org_id, &sub.id));
        self.delete(keys::webhook(&sub.id));
        Ok(())
    }

    /// A delivery by id.
    pub fn get_webhook_delivery(&self, id: &Uuid) -> Result<Option<WebhookDelivery>, StoreError> {
        self.get(&keys::webhook_delivery(id))
    }

    /// Records a new delivery: the row, its log entry and (when due) its pending-queue entry.
    /// Blind puts, no reads: it runs in the write of the change that caused the event.
    pub fn insert_webhook_delivery(&mut self, d: &WebhookDelivery) {
        self.put(
            keys::webhook_log(&d.subscription_id, d.created_at, &d.id),
            &d.id,
        );
        if let Some(due) = queued(d) {
            self.put(keys::webhook_pending(&d.subscription_id, due, &d.id), &d.id);
        }
        self.put(keys::webhook_delivery(&d.id), d);
    }

    /// Replaces a delivery's state, moving its pending-queue entry from the due time it had
    /// (`old_due`, as the queue holds it) to the one it has now, or out of the queue.
    pub fn update_webhook_delivery(&mut self, old_due: Option<i64>, d: &WebhookDelivery) {
        if let Some(old) = old_due {
            self.delete(keys::webhook_pending(&d.subscription_id, old, &d.id));
        }
        if let Some(due) = queued(d) {
            self.put(keys::webhook_pending(&d.subscription_id, due, &d.id), &d.id);
        }
        self.put(keys::webhook_delivery(&d.id), d);
    }
}

impl Store {
    /// A webhook subscription by id.
    pub fn get_webhook(&self, id: &Uuid) -> Result<Option<WebhookSubscription>, StoreError> {
        self.get(&keys::webhook(id))
    }

    /// An organization's subscriptions, oldest first.
    pub fn list_org_webhooks(&self, org: &Uuid) -> Result<Vec<WebhookSubscription>, StoreError> {
        let mut ids = Vec::new();
        self.scan_all(&keys::webhook_by_org_prefix(org), false, |k, _| {
            ids.extend(keys::uuid_suffix(k));
            Ok(true)
        })?;
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.get_webhook(&id)?);
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Every subscription of the node (the delivery worker's view at boot).
    pub fn list_webhooks(&self) -> Result<Vec<WebhookSubscription>, StoreError> {
        let mut out = Vec::new();
        self.scan_all(&keys::webhook_prefix(), false, |k, v| {
            out.push(decode(k, v)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// A delivery by id.
    pub fn get_webhook_delivery(&self, id: &Uuid) -> Result<Option<WebhookDelivery>, StoreError> {
        self.get(&keys::webhook_delivery(id))
    }

    /// Up to `limit` of subscription `sub`'s deliveries due at or before `now`, earliest first,
    /// as (due time, delivery id), skipping those `skip` says are taken already.
    pub fn due_webhook_deliveries(
        &self,
        sub: &Uuid,
        now: i64,
        limit: usize,
        skip: impl Fn(&Uuid) -> bool,
    ) -> Result<Vec<(i64, Uuid)>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let start = keys::webhook_pending_prefix(sub);
        let end = keys::webhook_pending_after(sub, now);
        self.scan_range(start, end, false, |k, _| {
            if let (Some(due), Some(id)) = (keys::webhook_pending_due(k), keys::uuid_suffix(k)) {
                if !skip(&id) {
                    out.push((due, id));
                }
            }
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// How many deliveries are queued (pending or awaiting a retry), and the earliest due time
    /// among them. Reads at most `cap` queue keys.
    pub fn webhook_queue_stats(&self, cap: usize) -> Result<(usize, Option<i64>), StoreError> {
        let mut n = 0usize;
        let mut earliest: Option<i64> = None;
        self.scan_all(&keys::webhook_pending_all(), false, |k, _| {
            n += 1;
            if let Some(due) = keys::webhook_pending_due(k) {
                earliest = Some(earliest.map_or(due, |e| e.min(due)));
            }
            Ok(n < cap)
        })?;
        Ok((n, earliest))
    }

    /// A page of subscription `sub`'s delivery log, newest first, optionally by status.
    pub fn list_webhook_deliveries(
        &self,
        sub: &Uuid,
        status: Option<DeliveryStatus>,
        offset: usize,
        limit: usize,
    ) -> Result<DeliveryPage, StoreError> {
        let mut page = DeliveryPage::default();
        self.scan_all(&keys::webhook_log_prefix(sub), true, |k, _| {
            let in_page = page.total >= offset && page.items.len() < limit;
            if status.is_none() && !in_page {
                page.total += 1;
                return Ok(true);
            }
            let Some(d) = keys::uuid_suffix(k)
                .map(|id| self.get_webhook_delivery(&id))
                .transpose()?
                .flatten()
            else {
                return Ok(true);
            };
            if status.is_some_and(|s| s != d.status) {
                return Ok(true);
            }
            if in_page {
                page.items.push(d);
            }
            page.total += 1;
            Ok(true)
        })?;
        Ok(page)
    }
}
