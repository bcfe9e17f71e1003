//! The align stage: per [`AlignRequest`], find the buyer's row in the seller's sales/students
//! database (by order id, then by email), create it when missing, and write the buyer's Notion
//! user id into it. Idempotent by content: a row that already holds the id is left alone, so a
//! second run changes nothing.
//!
//! - [`Aligner`]: the per-request logic over the [`SalesDatabase`] port.
//! - [`lambda`]: the Lambda wiring (SQS event source, partial batch responses).

pub mod lambda;

use enroll_core::batch::{self, BatchReport, Incoming};
use enroll_core::event::AlignRequest;
use enroll_core::ports::{DeadLetters, NewSalesRecord, SalesDatabase};
use enroll_core::Failure;
use std::sync::Arc;

/// What aligning one request did to the sales database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aligned {
    Created,
    Updated,
    Unchanged,
}

pub struct Aligner {
    pub sales: Arc<dyn SalesDatabase>,
}

impl Aligner {
    pub fn new(sales: Arc<dyn SalesDatabase>) -> Self {
        Self { sales }
    }

    #[tracing::instrument(skip_all, fields(event_key = %req.source, order = %req.order), err)]
    pub async fn align(&self, req: &AlignRequest) -> Result<Aligned, Failure> {
        let order_id = req.order.order_id.as_str();
        let found = match self.sales.find_by_order(order_id).await? {
            Some(r) => Some(r),
            None => self.sales.find_by_email(&req.email).await?,
        };
        let outcome = match found {
            Some(r) if r.notion_user_id.as_deref() == Some(req.notion_user_id.as_str()) => {
                Aligned::Unchanged
            }
            Some(r) => {
                self.sales
                    .set_user_id(&r.page_id, &req.notion_user_id)
                    .await?;
                Aligned::Updated
            }
            None => {
                let products = req
                    .products
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                let title = req
                    .name
                    .clone()
                    .unwrap_or_else(|| req.email.as_str().to_owned());
                self.sales
                    .create(&NewSalesRecord {
                        title: &title,
                        email: &req.email,
                        order_id,
                        notion_user_id: &req.notion_user_id,
                        products: &products,
                    })
                    .await?;
                Aligned::Created
            }
        };
        tracing::info!(outcome = ?outcome, "sales record aligned");
        Ok(outcome)
    }

    /// One queue batch of align requests.
    pub async fn run_batch(&self, dead: &dyn DeadLetters, messages: &[Incoming]) -> BatchReport {
        batch::run(messages, dead, |req: AlignRequest| async move {
            self.align(&req).await.map(drop)
        })
        .await
    }
}
