use enroll_aws::lambda_env::with_metrics;
use enroll_core::metrics::Function;
use lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    enroll_aws::lambda_env::init_tracing();
    let ingest = ingest::lambda::from_env().await?;
    run(service_fn(|req: Request| {
        with_metrics(
            Function::Ingest,
            ingest::lambda::function_handler(&ingest, req),
        )
    }))
    .await
}
