//! The Draw call as the generator makes it: the generated `DrawRequest` out, and each
//! `DrawResponse` decoded into an [`Answer`], a view that keeps only what the report counts
//! (whether the draw was empty) and so allocates nothing per response. The generated client
//! would decode `item_id` and `error` into fresh `String`s: one allocation per draw, a
//! million a second at the throughput target, on a machine the server shares.
//!
//! The method path and message types are the generated code's (`service/proto.rs`); the end
//! to end tests drive the generated server with this call, and a unit test decodes every
//! field of a generated `DrawResponse` through the view.

use prost::bytes::{Buf, BufMut};
use prost::encoding::{encode_key, encode_varint, skip_field, DecodeContext, WireType};
use prost::DecodeError;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{GrpcMethod, Status, Streaming};
use tonic_prost::ProstCodec;

use crate::service::proto::DrawRequest;

/// `DrawResponse.error`'s field number: set when the pool had nothing to draw.
const ERROR_FIELD: u32 = 3;

/// One `DrawResponse`, reduced to whether it reports an empty pool.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answer {
    pub empty: bool,
}

impl prost::Message for Answer {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        // Only for completeness (the generator never encodes answers): an empty draw as
        // `error: "empty"`.
        if self.empty {
            encode_key(ERROR_FIELD, WireType::LengthDelimited, buf);
            encode_varint(5, buf);
            buf.put_slice(b"empty");
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if tag == ERROR_FIELD && wire_type == WireType::LengthDelimited {
            // The length's first varint byte is 0 exactly when the string is empty (proto3:
            // the last occurrence wins). `skip_field` then checks and consumes it.
            self.empty = buf.chunk().first().is_some_and(|&b| b != 0);
        }
        skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        if self.empty {
            7
        } else {
            0
        }
    }

    fn clear(&mut self) {
        self.empty = false;
    }
}

/// Opens a Draw call on `grpc`'s connection, sending what `requests` yields.
pub(crate) async fn draw(
    grpc: &mut Grpc<Channel>,
    requests: impl tonic::IntoStreamingRequest<Message = DrawRequest>,
) -> Result<Streaming<Answer>, Status> {
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("the connection is not ready: {e}")))?;
    let mut request = requests.into_streaming_request();
    request.extensions_mut().insert(GrpcMethod::new("rewardpool.RewardPoolService", "Draw"));
    let path = PathAndQuery::from_static("/rewardpool.RewardPoolService/Draw");
    let codec = ProstCodec::<DrawRequest, Answer>::default();
    Ok(grpc.streaming(request, path, codec).await?.into_inner())
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::Answer;
    use crate::service::proto::DrawResponse;

    /// Every field of the generated message, in every combination the server sends, decodes
    /// through the view (unknown and skipped fields included), and the view's own encoding
    /// reads back through the generated type.
    #[test]
    fn answers_decode_what_the_generated_response_encodes() {
        let long = "x".repeat(300); // a two-byte length
        for (item, error, replayed) in [
            ("gold", "", false),
            ("", "pool is empty", true),
            (long.as_str(), "", true),
            ("", &long, false),
        ] {
            let full = DrawResponse {
                request_id: u64::MAX,
                item_id: item.to_owned(),
                error: error.to_owned(),
                replayed,
            };
            let answer = Answer::decode(full.encode_to_vec().as_slice()).unwrap();
            assert_eq!(answer, Answer { empty: !error.is_empty() }, "{full:?}");
            let back = DrawResponse::decode(answer.encode_to_vec().as_slice()).unwrap();
            assert_eq!(back.error.is_empty(), error.is_empty());
        }
        // A truncated message is an error, not a panic or a wrong answer.
        let bytes =
            DrawResponse { error: "empty".to_owned(), ..Default::default() }.encode_to_vec();
        assert!(Answer::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
