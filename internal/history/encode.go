package history

import (
	"strconv"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/jsontext"
)

// appendRecord appends r's JSON, as encoding/json writes it from r's
// tags (zero fields left out), without its ID: written by hand because
// every request's record is encoded (encoding/json's reflection took most
// of the writer's CPU).
func appendRecord(b []byte, r Record) []byte {
	b = append(b, `{"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "webhook_id", r.WebhookID, true)
	b = appendField(b, "delivery_id", r.DeliveryID, false)
	b = appendField(b, "outcome", r.Outcome, true)
	b = appendField(b, "reason", r.Reason, false)
	b = appendInt(b, "status", r.Status)
	b = appendInt(b, "attempts", r.Attempts)
	b = appendField(b, "step", r.Step, false)
	b = appendInt(b, "codemie_status", r.CodeMieStatus)
	b = appendFloat(b, "duration_ms", r.DurationMs)
	b = appendFloat(b, "age_ms", r.AgeMs)
	b = appendInt(b, "body_bytes", r.BodyBytes)
	b = appendField(b, "preview", r.Preview, false)
	b = appendField(b, "entry", r.Entry, false)
	b = appendField(b, "trace_id", r.TraceID, false)
	if r.Unauthenticated {
		b = append(b, `,"unauthenticated":true`...)
	}
	return append(b, '}')
}

// appendField appends a string member; an empty one only when always.
func appendField(b []byte, name, v string, always bool) []byte {
	if v == "" && !always {
		return b
	}
	b = append(append(append(b, ',', '"'), name...), '"', ':')
	return jsontext.AppendString(b, v)
}

func appendInt(b []byte, name string, v int) []byte {
	if v == 0 {
		return b
	}
	b = append(append(append(b, ',', '"'), name...), '"', ':')
	return strconv.AppendInt(b, int64(v), 10)
}

func appendFloat(b []byte, name string, v float64) []byte {
	if v == 0 {
		return b
	}
	b = append(append(append(b, ',', '"'), name...), '"', ':')
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}
