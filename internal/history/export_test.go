package history

import (
	"time"

	"go.uber.org/zap"
)

// EncodeForTest is appendRecord, for the tests of package history_test.
func EncodeForTest(r Record) []byte { return appendRecord(nil, r) }

// FlushSize is flushSize, for the tests of package history_test.
const FlushSize = flushSize

// StartWriterEvery is StartWriter with a flush interval of its own.
func (l *Log) StartWriterEvery(buffer int, interval time.Duration) *Writer {
	return l.startWriter(buffer, interval, nil, zap.NewNop())
}
