//! Requests the sampler drops cost no OpenTelemetry work.
//!
//! The telemetry layer decides at the door whether an RPC is traced
//! ([`super::sampler::sample_rpc`]). An RPC that is not gets a plain
//! tracing span under [`UNSAMPLED_TARGET`]: the logs still name its method,
//! caller and request id, but [`SampledOnly`] keeps it, every span below
//! it and every event inside it away from the OpenTelemetry layer. So a
//! dropped request builds no span data, takes no timestamps on each poll
//! and sends nothing to the exporter; only the RPC metric counts it.
//!
//! (The OpenTelemetry SDK samples when a span ends: without this, the
//! trace layer would have done all of its work for every request and the
//! sampler would only have decided what to throw away.)

use std::any::TypeId;

use tracing::span;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The target of an RPC span the sampler dropped.
pub const UNSAMPLED_TARGET: &str = "slr_governor::rpc::unsampled";

/// Marks a span (in its extensions) as outside every exported trace.
struct Unsampled;

/// Wraps the OpenTelemetry layer: passes it only spans and events outside
/// dropped RPCs (see the module).
pub(super) struct SampledOnly<L> {
    inner: L,
}

impl<L> SampledOnly<L> {
    pub(super) fn new(inner: L) -> Self {
        SampledOnly { inner }
    }
}

fn is_unsampled<S>(id: &span::Id, cx: &Context<'_, S>) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    cx.span(id)
        .is_some_and(|span| span.extensions().get::<Unsampled>().is_some())
}

impl<S, L> Layer<S> for SampledOnly<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, cx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, cx)
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, cx: Context<'_, S>) {
        let parent = if attrs.is_contextual() {
            cx.lookup_current().map(|span| span.id())
        } else {
            attrs.parent().cloned()
        };
        let unsampled = attrs.metadata().target() == UNSAMPLED_TARGET
            || parent.is_some_and(|parent| is_unsampled(&parent, &cx));
        if unsampled {
            if let Some(span) = cx.span(id) {
                span.extensions_mut().insert(Unsampled);
            }
            return;
        }
        self.inner.on_new_span(attrs, id, cx);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, cx: Context<'_, S>) {
        if !is_unsampled(id, &cx) {
            self.inner.on_record(id, values, cx);
        }
    }

    fn on_follows_from(&self, id: &span::Id, follows: &span::Id, cx: Context<'_, S>) {
        if !is_unsampled(id, &cx) && !is_unsampled(follows, &cx) {
            self.inner.on_follows_from(id, follows, cx);
        }
    }

    fn event_enabled(&self, event: &Event<'_>, cx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, cx)
    }

    fn on_event(&self, event: &Event<'_>, cx: Context<'_, S>) {
        let within = if event.is_contextual() {
            cx.lookup_current().map(|span| span.id())
        } else {
            event.parent().cloned()
        };
        if !within.is_some_and(|id| is_unsampled(&id, &cx)) {
            self.inner.on_event(event, cx);
        }
    }

    fn on_enter(&self, id: &span::Id, cx: Context<'_, S>) {
        if !is_unsampled(id, &cx) {
            self.inner.on_enter(id, cx);
        }
    }

    fn on_exit(&self, id: &span::Id, cx: Context<'_, S>) {
        if !is_unsampled(id, &cx) {
            self.inner.on_exit(id, cx);
        }
    }

    fn on_close(&self, id: span::Id, cx: Context<'_, S>) {
        if !is_unsampled(&id, &cx) {
            self.inner.on_close(id, cx);
        }
    }

    fn on_id_change(&self, old: &span::Id, new: &span::Id, cx: Context<'_, S>) {
        if !is_unsampled(old, &cx) {
            self.inner.on_id_change(old, new, cx);
        }
    }

    // `OpenTelemetrySpanExt` (the caller's `traceparent`, the trace ids in
    // JSON logs) finds the trace layer by its type through this: pass it
    // on, as tracing-subscriber's own wrappers do.
    #[allow(unsafe_code)]
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            Some(std::ptr::from_ref(self).cast())
        } else {
            // SAFETY: the same contract, answered by the inner layer for
            // its own types (a pointer to the value of the type asked for).
            unsafe { self.inner.downcast_raw(id) }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// What the wrapped layer was shown.
    #[derive(Default)]
    struct Seen {
        spans: Vec<String>,
        events: Vec<String>,
        enters: usize,
        closes: usize,
    }

    #[derive(Clone, Default)]
    struct Recording(Arc<Mutex<Seen>>);

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recording {
        fn on_new_span(&self, attrs: &span::Attributes<'_>, _: &span::Id, _: Context<'_, S>) {
            let mut seen = self.0.lock().expect("lock");
            seen.spans.push(attrs.metadata().name().to_owned());
        }
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut seen = self.0.lock().expect("lock");
            seen.events.push(event.metadata().target().to_owned());
        }
        fn on_enter(&self, _: &span::Id, _: Context<'_, S>) {
            self.0.lock().expect("lock").enters += 1;
        }
        fn on_close(&self, _: span::Id, _: Context<'_, S>) {
            self.0.lock().expect("lock").closes += 1;
        }
    }

    #[test]
    fn a_dropped_rpc_and_everything_under_it_never_reach_the_trace_layer() {
        let recording = Recording::default();
        let subscriber = tracing_subscriber::registry().with(SampledOnly::new(recording.clone()));
        let dispatch = tracing::Dispatch::new(subscriber);
        tracing::dispatcher::with_default(&dispatch, || {
            let dropped = tracing::info_span!(target: UNSAMPLED_TARGET, "grpc", request_id = 1);
            dropped.in_scope(|| {
                let child = tracing::info_span!("db instance_get");
                child.in_scope(|| {
                    tracing::info!(target: "slrgov_store", "inside a dropped rpc");
                    let grandchild = tracing::info_span!(parent: &child, "IAM GetRole");
                    grandchild.in_scope(|| tracing::info!("deeper"));
                });
            });
            drop(dropped);
            // A kept RPC, its children and events all go through.
            let kept = tracing::info_span!("grpc", request_id = 2);
            kept.in_scope(|| {
                let child = tracing::info_span!("db instance_get");
                child.in_scope(|| tracing::info!(target: "slrgov_store", "inside a kept rpc"));
            });
            drop(kept);
            // An explicit parent outside the current span decides too.
            let dropped = tracing::info_span!(target: UNSAMPLED_TARGET, "grpc", request_id = 3);
            let orphan = tracing::info_span!(parent: &dropped, "db account_get");
            drop((orphan, dropped));
            // The wrapped layer is still found by its type (how
            // `OpenTelemetrySpanExt` finds the trace layer).
            assert!(dispatch.downcast_ref::<Recording>().is_some());
        });
        let seen = recording.0.lock().expect("lock");
        assert_eq!(seen.spans, ["grpc", "db instance_get"]);
        assert_eq!(seen.events, ["slrgov_store"]);
        assert_eq!((seen.enters, seen.closes), (2, 2));
    }
}
