//! The trace sampler: `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`
//! as the OpenTelemetry specification defines them, over the service's own
//! rule that no trace starts at a database call or a worker's lifetime.
//!
//! | `OTEL_TRACES_SAMPLER` | a trace the service starts | a caller's `traceparent` |
//! | --- | --- | --- |
//! | `parentbased_always_on` (default) | sampled | its sampled flag |
//! | `parentbased_always_off` | dropped | its sampled flag |
//! | `parentbased_traceidratio` | by trace id, `ARG` of them (default 1.0) | its sampled flag |
//! | `always_on` | sampled | sampled |
//! | `always_off` | dropped | dropped |
//! | `traceidratio` | by trace id, `ARG` of them | by trace id |
//!
//! A span under a span of this process always follows its parent, whatever
//! the setting: a trace is kept or dropped whole. The metrics do not depend
//! on the sampler (the RPC histogram counts every call).
//!
//! An RPC is decided at the door ([`sample_rpc`], by the telemetry layer,
//! before any span exists) with the same rules, so that a dropped RPC
//! costs no trace work at all ([`super::unsampled`]); the SDK then keeps
//! every server span it is given, as those are the RPCs decided for.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::trace::{Link, SpanContext, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

use super::var;

/// What decides a trace's root.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Root {
    On,
    Off,
    /// The fraction of trace ids kept, in `[0, 1]`.
    Ratio(f64),
}

/// The service's sampler (see the module documentation).
#[derive(Debug, Clone)]
pub(super) struct Sampler {
    root: Root,
    /// Whether a caller's sampled flag decides (the `parentbased_*` ones).
    follow_callers: bool,
}

impl Sampler {
    /// Reads `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`; a value
    /// the service does not know is an error (the server stops at start
    /// rather than sample otherwise than asked).
    pub(super) fn from_env() -> Result<Sampler, String> {
        Self::parse(
            var("OTEL_TRACES_SAMPLER").as_deref(),
            var("OTEL_TRACES_SAMPLER_ARG").as_deref(),
        )
    }

    fn parse(name: Option<&str>, arg: Option<&str>) -> Result<Sampler, String> {
        let ratio = || -> Result<f64, String> {
            let Some(arg) = arg else { return Ok(1.0) };
            match arg.trim().parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
                _ => Err(format!(
                    "OTEL_TRACES_SAMPLER_ARG={arg}: expected a ratio from 0 to 1, e.g. 0.1"
                )),
            }
        };
        let name = name.map(str::trim).unwrap_or("parentbased_always_on");
        let (root, follow_callers) = match name {
            "parentbased_always_on" => (Root::On, true),
            "parentbased_always_off" => (Root::Off, true),
            "parentbased_traceidratio" => (Root::Ratio(ratio()?), true),
            "always_on" => (Root::On, false),
            "always_off" => (Root::Off, false),
            "traceidratio" => (Root::Ratio(ratio()?), false),
            other => {
                return Err(format!(
                    "OTEL_TRACES_SAMPLER={other} is not supported: use parentbased_always_on (the default), parentbased_always_off, parentbased_traceidratio, always_on, always_off or traceidratio"
                ));
            }
        };
        Ok(Sampler {
            root,
            follow_callers,
        })
    }

    /// [`sample_rpc`] under this sampler.
    fn decide_rpc(&self, parent: &SpanContext) -> bool {
        if parent.is_valid() {
            return if self.follow_callers {
                parent.is_sampled()
            } else {
                self.decide_root(parent.trace_id(), "rpc")
            };
        }
        match self.root {
            Root::On => true,
            Root::Off => false,
            Root::Ratio(_) => {
                self.decide_root(TraceId::from_bytes(rand::random::<[u8; 16]>()), "rpc")
            }
        }
    }

    /// The decision for a trace that starts here (or whose caller's flag
    /// does not decide).
    fn decide_root(&self, trace_id: TraceId, name: &str) -> bool {
        // The worker's polls and the gauge reads (several a second per
        // replica, with nothing to say), and a span as long as the process.
        if name.starts_with("db ") || name == "worker" {
            return false;
        }
        match self.root {
            Root::On => true,
            Root::Off => false,
            // The specification's TraceIdRatioBased: the low 8 bytes of the
            // id against the ratio, so every service that samples a trace id
            // at the same ratio keeps the same traces.
            Root::Ratio(ratio) => {
                let low = u64::from_be_bytes(
                    trace_id.to_bytes()[8..]
                        .try_into()
                        .expect("8 bytes of a 16-byte id"),
                ) >> 1;
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let bound = (ratio * (1u64 << 63) as f64) as u64;
                low < bound
            }
        }
    }
}

/// The sampler of the exported traces; unset while the export is off.
static RPC_SAMPLER: OnceLock<Sampler> = OnceLock::new();

/// Makes `sampler` the one [`sample_rpc`] asks (at start, with the export).
pub(super) fn install(sampler: Sampler) {
    let _ = RPC_SAMPLER.set(sampler);
}

/// Whether an RPC whose caller sent `parent` (its `traceparent`, or an
/// invalid context without one) is traced: by the caller's sampled flag
/// under a `parentbased_*` sampler, else by the ratio, on the caller's
/// trace id when there is one (every service sampling that id at that
/// ratio decides alike) or on a random draw for a trace that starts here.
/// Never while the export is off.
pub(crate) fn sample_rpc(parent: &SpanContext) -> bool {
    RPC_SAMPLER
        .get()
        .is_some_and(|sampler| sampler.decide_rpc(parent))
}

impl ShouldSample for Sampler {
    fn should_sample(
        &self,
        parent: Option<&opentelemetry::Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let parent = parent
            .filter(|cx| cx.has_active_span())
            .map(|cx| cx.span().span_context().clone());
        let (sampled, trace_state) = match parent {
            Some(parent) if !parent.is_remote() || self.follow_callers => {
                (parent.is_sampled(), parent.trace_state().clone())
            }
            // An RPC's server span: [`sample_rpc`] kept it (the ones it
            // dropped never reach the SDK), by the same rules.
            Some(parent) if *kind == SpanKind::Server => (true, parent.trace_state().clone()),
            None if *kind == SpanKind::Server => (true, TraceState::default()),
            Some(parent) => (
                self.decide_root(trace_id, name),
                parent.trace_state().clone(),
            ),
            None => (self.decide_root(trace_id, name), TraceState::default()),
        };
        SamplingResult {
            decision: if sampled {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Root, Sampler};
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    #[test]
    fn the_standard_names_and_ratios_parse_and_others_are_refused() {
        let parsed = |name, arg| Sampler::parse(name, arg).map(|s| (s.root, s.follow_callers));
        assert_eq!(parsed(None, None), Ok((Root::On, true)));
        assert_eq!(
            parsed(Some("parentbased_traceidratio"), Some("0.25")),
            Ok((Root::Ratio(0.25), true))
        );
        assert_eq!(
            parsed(Some("traceidratio"), None),
            Ok((Root::Ratio(1.0), false))
        );
        assert_eq!(parsed(Some("always_off"), None), Ok((Root::Off, false)));
        for (name, arg) in [
            (Some("jaeger_remote"), None),
            (Some("traceidratio"), Some("1.5")),
            (Some("traceidratio"), Some("-0.1")),
            (Some("traceidratio"), Some("half")),
        ] {
            let error = Sampler::parse(name, arg).expect_err("refused");
            assert!(error.starts_with("OTEL_TRACES_SAMPLER"), "{error}");
        }
    }

    #[test]
    fn a_ratio_keeps_about_that_share_of_trace_ids_and_never_db_roots() {
        let sampler = Sampler::parse(Some("traceidratio"), Some("0.25")).expect("parse");
        let kept = (0..10_000u128)
            .filter(|i| {
                // Ids spread over the whole space, as random ones are.
                let id = TraceId::from_bytes(
                    i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
                        .to_be_bytes(),
                );
                sampler.decide_root(id, "slrgov.v1.InstanceService/GetInstance")
            })
            .count();
        assert!((2_200..=2_800).contains(&kept), "kept {kept} of 10000");
        let all = Sampler::parse(None, None).expect("parse");
        let id = TraceId::from_bytes([7; 16]);
        assert!(all.decide_root(id, "slrgov.v1.InstanceService/GetInstance"));
        assert!(!all.decide_root(id, "db instance_get"));
        assert!(!all.decide_root(id, "worker"));
    }

    fn caller(trace_id: [u8; 16], sampled: bool) -> SpanContext {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(
            TraceId::from_bytes(trace_id),
            SpanId::from_bytes([1; 8]),
            flags,
            true,
            TraceState::default(),
        )
    }

    #[test]
    fn rpcs_are_decided_at_the_door_by_the_same_rules() {
        let none = SpanContext::NONE;
        // Parent-based: the caller's flag, whatever the ratio.
        let half = Sampler::parse(Some("parentbased_traceidratio"), Some("0.5")).expect("parse");
        // (From 1: an all-zero trace id is no trace at all.)
        for n in 1..64u8 {
            assert!(half.decide_rpc(&caller([n; 16], true)));
            assert!(!half.decide_rpc(&caller([n; 16], false)));
        }
        // A trace that starts here: about the ratio of random draws.
        let kept = (0..10_000).filter(|_| half.decide_rpc(&none)).count();
        assert!((4_600..=5_400).contains(&kept), "kept {kept} of 10000");
        let on = Sampler::parse(None, None).expect("parse");
        assert!(on.decide_rpc(&none));
        let off = Sampler::parse(Some("parentbased_always_off"), None).expect("parse");
        assert!(!off.decide_rpc(&none));
        assert!(off.decide_rpc(&caller([3; 16], true)));
        // Not parent-based: the caller's trace id at the ratio, as every
        // service sampling that id decides, and not its flag.
        let ratio = Sampler::parse(Some("traceidratio"), Some("0.5")).expect("parse");
        for n in 0..=255u8 {
            let mut id = [0u8; 16];
            id[0] = 1;
            id[8] = n;
            let expected = ratio.decide_root(TraceId::from_bytes(id), "rpc");
            assert_eq!(ratio.decide_rpc(&caller(id, true)), expected);
            assert_eq!(ratio.decide_rpc(&caller(id, false)), expected);
        }
        assert!(
            !Sampler::parse(Some("always_off"), None)
                .expect("parse")
                .decide_rpc(&caller([9; 16], true))
        );
    }
}
