//! [`MarketSink`] on the broker's confirmed publisher: market data goes to `tw.market`
//! under the contract's routing keys, and a call returns once the broker confirmed all of
//! it.

use tickwatch_broker::{Confirm, Publisher};
use tickwatch_schema::names::Exchange;
use tickwatch_schema::wire::{Candle, Message, Tick};

use crate::sink::{MarketSink, SinkError};

#[derive(Debug, Clone)]
pub struct PublisherSink {
    publisher: Publisher,
}

impl PublisherSink {
    pub fn new(publisher: Publisher) -> Self {
        PublisherSink { publisher }
    }

    async fn publish<M: Message>(&self, messages: &[M]) -> Result<(), SinkError> {
        // Hand every message over first, then wait: the confirms arrive pipelined.
        let mut pending: Vec<Confirm> = Vec::with_capacity(messages.len());
        for message in messages {
            pending.push(
                self.publisher
                    .send(Exchange::Market, message)
                    .await
                    .map_err(sink_error)?,
            );
        }
        for confirm in pending {
            confirm.wait().await.map_err(sink_error)?;
        }
        Ok(())
    }
}

fn sink_error(e: tickwatch_broker::Error) -> SinkError {
    if e.is_retryable() {
        SinkError::Unavailable(e.to_string())
    } else {
        SinkError::Rejected(e.to_string())
    }
}

#[async_trait::async_trait]
impl MarketSink for PublisherSink {
    async fn publish_ticks(&self, ticks: &[Tick]) -> Result<(), SinkError> {
        self.publish(ticks).await
    }

    async fn publish_candles(&self, candles: &[Candle]) -> Result<(), SinkError> {
        self.publish(candles).await
    }
}
