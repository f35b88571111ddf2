//! What a `tracing` subscriber sees of a call: one `call` span with every
//! field filled in.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

use crate::common::{job, pool};

/// Records the fields of every `call` span, as text.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl<S> Layer<S> for Calls
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let meta = attrs.metadata();
        if meta.name() != "call" || !meta.target().starts_with("wasmpool") {
            return;
        }
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let span = ctx.span(id).expect("the span is live");
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("the span is live");
        if let Some(fields) = span.extensions_mut().get_mut::<BTreeMap<String, String>>() {
            values.record(&mut Fields(fields));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).expect("the span is live");
        if let Some(fields) = span.extensions_mut().remove::<BTreeMap<String, String>>() {
            self.0.lock().unwrap().push(fields);
        }
    }
}

#[tokio::test]
async fn a_call_is_one_span_with_job_function_ids_and_times() {
    let calls = Calls::default();
    let subscriber = tracing_subscriber::registry().with(calls.clone());
    // The test's runtime runs the call on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);
    // Another test's thread may have met the `call` callsite, and cached
    // its interest, while this subscriber was being registered: ask every
    // callsite again, now that it is.
    tracing::callsite::rebuild_interest_cache();

    let pool = pool(1);
    let fib = job(wasmpool_guests::FIB);
    // A thread of another test that meets the callsite while the interest
    // is rebuilt can cache it as unwanted again; then the span of this
    // call is not made, and the next call, after another rebuild, has it.
    for _ in 0..10 {
        let n: u64 = pool.run(&fib, "fib", (20u64,)).await.unwrap();
        assert_eq!(n, 6765);
        if !calls.0.lock().unwrap().is_empty() {
            break;
        }
        tracing::callsite::rebuild_interest_cache();
    }
    let pid = pool.worker_pids()[0];
    pool.shutdown().await;

    let seen = calls.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "one call span: {seen:?}");
    let span = &seen[0];
    assert_eq!(span["func"], "\"fib\"");
    assert!(
        fib.hash().starts_with(span["job"].trim_matches('"')),
        "{span:?}"
    );
    assert_eq!(span["pid"], pid.to_string());
    for field in ["call", "worker", "items", "queue_wait_us", "run_us"] {
        assert!(span.contains_key(field), "{field} missing from {span:?}");
    }
}
