use lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    enroll_aws::lambda_env::init_tracing();
    let ingest = ingest::lambda::from_env().await?;
    run(service_fn(|req: Request| {
        ingest::lambda::function_handler(&ingest, req)
    }))
    .await
}
