use enroll_aws::lambda_env::with_metrics;
use enroll_core::metrics::Function;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use notify::lambda::{function_handler, Deps};

#[tokio::main]
async fn main() -> Result<(), Error> {
    enroll_aws::lambda_env::init_tracing();
    let deps = Deps::from_env().await?;
    run(service_fn(|event: LambdaEvent<_>| {
        with_metrics(Function::Notify, function_handler(&deps, event))
    }))
    .await
}
