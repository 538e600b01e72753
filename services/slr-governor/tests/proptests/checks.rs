//! The properties every RPC is held to, the runner that feeds both
//! generators of an RPC through its handler, and `rpc_test!`, which makes
//! the test of one RPC.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::io::Write as _;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use prost::Message;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::harness::{CORRELATION_ID, Harness, Snapshot, request};
use crate::wire::bytes_of;

/// Cases per generator (structured, bytes) and RPC, unless PROPTEST_CASES
/// says otherwise.
const DEFAULT_CASES: u32 = 1000;
/// The largest header list a tonic (hyper) client accepts by default,
/// counted as HTTP/2 does (name + value + 32 per header). An error whose
/// trailers are larger reaches such a client as INTERNAL ("h2 protocol
/// error"), not as the code the handler chose.
const CLIENT_HEADER_LIST_MAX: usize = 16 * 1024;
/// RPCs known to answer some bad input with trailers over
/// [`CLIENT_HEADER_LIST_MAX`] (they echo the bad input or list every bad
/// path with a long description): counted and printed, not failed, until
/// fixed. Remove an entry once its RPC bounds what it echoes (none left:
/// every RPC now cuts echoed paths and lists the updatable fields once).
const KNOWN_OVERSIZED_TRAILERS: &[&str] = &[];

/// One RPC under test.
pub struct Spec {
    /// `Service/Method`, for the report.
    rpc: &'static str,
    /// The request's top-level fields: a violation must name one of them.
    fields: &'static [&'static str],
    /// Reaches for STS and IAM when the request is valid: UNAVAILABLE with
    /// IAM_UNAVAILABLE is then expected (the SDK points nowhere).
    reaches_iam: bool,
    /// Writes to the store: an INVALID_ARGUMENT must leave it unchanged.
    writes: bool,
    /// UNIMPLEMENTED is the documented answer.
    unimplemented: bool,
}

impl Spec {
    /// An RPC that only reads the store.
    pub const fn reads(rpc: &'static str, fields: &'static [&'static str]) -> Spec {
        Spec {
            rpc,
            fields,
            reaches_iam: false,
            writes: false,
            unimplemented: false,
        }
    }

    /// An RPC that writes to the store.
    pub const fn writes(rpc: &'static str, fields: &'static [&'static str]) -> Spec {
        Spec {
            writes: true,
            ..Spec::reads(rpc, fields)
        }
    }

    /// ... and reaches for STS and IAM when the request is valid.
    pub const fn reaching_iam(self) -> Spec {
        Spec {
            reaches_iam: true,
            ..self
        }
    }

    /// ... and answers UNIMPLEMENTED, as documented.
    pub const fn unimplemented(self) -> Spec {
        Spec {
            unimplemented: true,
            ..self
        }
    }
}

#[derive(Default)]
struct Stats {
    structured: u64,
    bytes: u64,
    undecodable: u64,
    outcomes: BTreeMap<String, u64>,
    /// The longest status message and details seen (an error should not
    /// echo a huge input back into the trailers).
    longest_message: usize,
    longest_details: usize,
    /// The largest trailers (as an HTTP/2 header list) of an error.
    largest_trailers: usize,
    /// Errors whose trailers a tonic client would refuse.
    oversized: u64,
    /// The last snapshot known to match the store (none after a write).
    known: Option<Snapshot>,
}

fn shown<T: Debug>(value: &T) -> String {
    let text = format!("{value:?}");
    if text.len() <= 3000 {
        text
    } else {
        let mut end = 3000;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} bytes in all)", &text[..end], text.len())
    }
}

/// The size of an error's trailers-only response as HTTP/2 counts a header
/// list.
fn trailers_size(status: &Status) -> usize {
    status
        .clone()
        .into_http::<tonic::body::Body>()
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum()
}

fn allowed(spec: &Spec, code: Code) -> bool {
    match code {
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange
        | Code::PermissionDenied
        | Code::ResourceExhausted => true,
        Code::Unimplemented => spec.unimplemented,
        // Only from the SDK pointing nowhere, checked below.
        Code::Unavailable => spec.reaches_iam,
        _ => false,
    }
}

/// The first segment of a field path: `instance.features.lex_bots[1]` ->
/// `instance`.
fn top_level(field: &str) -> &str {
    let end = field.find(['.', '[']).unwrap_or(field.len());
    &field[..end]
}

/// What a runner's failure says, the minimized input shown by `input`.
fn failure<V>(result: Result<(), TestError<V>>, input: impl Fn(&V) -> String) -> Option<String> {
    match result {
        Ok(()) => None,
        Err(TestError::Fail(why, value)) => {
            Some(format!("{why}\nminimized input: {}", input(&value)))
        }
        Err(TestError::Abort(why)) => Some(why.to_string()),
    }
}

impl Harness {
    /// Runs one request through `call` and checks the properties.
    fn case<R, F, Fut>(
        &self,
        spec: &Spec,
        stats: &RefCell<Stats>,
        message: R,
        call: &F,
    ) -> Result<(), TestCaseError>
    where
        F: Fn(Request<R>) -> Fut,
        Fut: Future<Output = Result<(), Status>>,
    {
        let before = if spec.writes {
            let known = stats.borrow_mut().known.take();
            Some(known.unwrap_or_else(|| self.snapshot()))
        } else {
            None
        };
        let result = self.rt.block_on(call(request(message)));
        let status = match result {
            Ok(()) => {
                *stats.borrow_mut().outcomes.entry("OK".into()).or_default() += 1;
                return Ok(());
            }
            Err(status) => status,
        };
        let info = status.get_details_error_info();
        let reason = info.as_ref().map(|i| i.reason.clone()).unwrap_or_default();
        {
            let mut stats = stats.borrow_mut();
            *stats
                .outcomes
                .entry(format!("{:?}/{reason}", status.code()))
                .or_default() += 1;
            stats.longest_message = stats.longest_message.max(status.message().len());
            stats.longest_details = stats.longest_details.max(status.details().len());
        }
        let trailers = trailers_size(&status);
        {
            let mut stats = stats.borrow_mut();
            stats.largest_trailers = stats.largest_trailers.max(trailers);
            if trailers > CLIENT_HEADER_LIST_MAX {
                stats.oversized += 1;
            }
        }
        if !KNOWN_OVERSIZED_TRAILERS.contains(&spec.rpc) {
            prop_assert!(
                trailers <= CLIENT_HEADER_LIST_MAX,
                "{}: the error's trailers take {trailers} bytes, over the {CLIENT_HEADER_LIST_MAX} \
                 a tonic client accepts (it would see INTERNAL): {}",
                spec.rpc,
                shown(&status.message())
            );
        }
        prop_assert!(
            allowed(spec, status.code()),
            "{}: {:?} is not a code for a client mistake: {status:?}",
            spec.rpc,
            status.code()
        );
        if status.code() == Code::Unavailable {
            prop_assert_eq!(
                reason.as_str(),
                "IAM_UNAVAILABLE",
                "{}: UNAVAILABLE other than from IAM: {:?}",
                spec.rpc,
                status
            );
        }
        let info = info.ok_or_else(|| {
            TestCaseError::fail(format!("{}: no ErrorInfo in {status:?}", spec.rpc))
        })?;
        prop_assert_eq!(info.domain.as_str(), "slrgov.v1");
        prop_assert_ne!(info.reason.as_str(), "INTERNAL");
        let request_info = status.get_details_request_info();
        prop_assert_eq!(
            request_info.map(|r| r.request_id),
            Some(CORRELATION_ID.to_owned()),
            "{}: RequestInfo missing or wrong in {:?}",
            spec.rpc,
            status
        );
        if status.code() == Code::InvalidArgument {
            let bad = status.get_details_bad_request().ok_or_else(|| {
                TestCaseError::fail(format!("{}: INVALID_ARGUMENT without BadRequest", spec.rpc))
            })?;
            prop_assert!(
                !bad.field_violations.is_empty(),
                "{}: a BadRequest without violations: {:?}",
                spec.rpc,
                status
            );
            for violation in &bad.field_violations {
                prop_assert!(
                    spec.fields.contains(&top_level(&violation.field)),
                    "{}: violation names {:?}, not a field of the request ({:?})",
                    spec.rpc,
                    shown(&violation.field),
                    spec.fields
                );
                prop_assert!(!violation.description.is_empty());
            }
            if let Some(before) = before {
                let after = self.snapshot();
                prop_assert!(
                    before == after,
                    "{}: INVALID_ARGUMENT ({}) changed the store",
                    spec.rpc,
                    status.message()
                );
                stats.borrow_mut().known = Some(after);
            }
        }
        Ok(())
    }

    /// Runs both generators of one RPC and prints what ran.
    pub fn check<R, F, Fut>(&self, spec: Spec, structured: BoxedStrategy<R>, call: F)
    where
        R: Message + Default + Clone + Debug + 'static,
        F: Fn(Request<R>) -> Fut,
        Fut: Future<Output = Result<(), Status>>,
    {
        let started = Instant::now();
        let base = Config::default();
        let cases = if std::env::var_os("PROPTEST_CASES").is_some() {
            base.cases
        } else {
            DEFAULT_CASES
        };
        let seed = match base.rng_seed {
            RngSeed::Fixed(seed) => seed,
            RngSeed::Random => uuid::Uuid::new_v4().as_u64_pair().0,
        };
        let config = || Config {
            cases,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(seed),
            max_shrink_iters: 4096,
            ..Config::default()
        };
        let stats = RefCell::new(Stats::default());
        let fail = |kind: &str, error: String| -> ! {
            panic!(
                "{}: the {kind} generator failed (replay with PROPTEST_RNG_SEED={seed}): {error}",
                spec.rpc
            )
        };

        let mut runner = TestRunner::new(config());
        let result = runner.run(&structured, |message| {
            stats.borrow_mut().structured += 1;
            self.case(&spec, &stats, message, &call)
        });
        if let Some(error) = failure(result, shown) {
            fail("structured", error);
        }

        let mut runner = TestRunner::new(config());
        let bytes = bytes_of(structured);
        let result = runner.run(&bytes, |bytes| {
            stats.borrow_mut().bytes += 1;
            match R::decode(bytes.as_slice()) {
                Ok(message) => self.case(&spec, &stats, message, &call),
                Err(_) => {
                    stats.borrow_mut().undecodable += 1;
                    Ok(())
                }
            }
        });
        let decoded = |bytes: &Vec<u8>| {
            format!(
                "{bytes:?}\ndecoded: {}",
                shown(&R::decode(bytes.as_slice()))
            )
        };
        if let Some(error) = failure(result, decoded) {
            fail("bytes", error);
        }

        let stats = stats.into_inner();
        let outcomes = stats
            .outcomes
            .iter()
            .map(|(outcome, n)| format!("{outcome}={n}"))
            .collect::<Vec<_>>()
            .join(" ");
        let line = format!(
            "proptests: {}: {} cases ({} structured, {} from bytes of which {} did not decode) \
             in {:.1?}; seed {seed}; longest error message {} bytes, details {} bytes; \
             largest trailers {} bytes ({} over {CLIENT_HEADER_LIST_MAX}); outcomes: {outcomes}",
            spec.rpc,
            stats.structured + stats.bytes,
            stats.structured,
            stats.bytes,
            stats.undecodable,
            started.elapsed(),
            stats.longest_message,
            stats.longest_details,
            stats.largest_trailers,
            stats.oversized,
        );
        eprintln!("{line}");
        if let Some(path) = std::env::var_os("SLRGOV_PROPTEST_REPORT")
            && let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// The test of one RPC: `$service::$method` (of a handler made with
/// `$service::new`) against the requests of `requests::$method`, held to
/// `$spec`. The response is dropped.
macro_rules! rpc_test {
    ($name:ident: $service:ident::$method:ident, $spec:expr $(,)?) => {
        #[test]
        fn $name() {
            let h = $crate::harness::Harness::new();
            let service = $service::new(h.state.clone());
            let service = &service;
            let requests = $crate::requests::$method(&h.fx);
            h.check($spec, requests, move |request| async move {
                service.$method(request).await.map(drop)
            });
        }
    };
}
