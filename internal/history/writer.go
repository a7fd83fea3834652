package history

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// flushInterval is how long a record waits, at most, before its batch is
// written; flushSize is the most records one batch holds.
const (
	flushInterval = 100 * time.Millisecond
	flushSize     = 256
)

// Writer appends records to a log in batches, from one goroutine, so that
// recording costs a request a channel send and no round trip. When Redis
// is slower than the records come, the buffer fills and records are
// dropped (counted), never waited for.
type Writer struct {
	log     *Log
	in      chan Record // never closed: a late Add must not panic
	dropped func(n int)
	logger  *zap.Logger
	quit    chan struct{}
	done    chan struct{}
}

// StartWriter starts a writer to l that buffers up to buffer records;
// dropped (if not nil) is told of records dropped, for a metric. Stop
// ends it.
func (l *Log) StartWriter(buffer int, dropped func(n int), logger *zap.Logger) *Writer {
	w := &Writer{log: l, in: make(chan Record, max(buffer, 1)), dropped: dropped, logger: logger,
		quit: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// Add hands r to the writer; it never blocks. A nil writer records nothing.
func (w *Writer) Add(r Record) {
	if w == nil {
		return
	}
	select {
	case w.in <- r:
	default:
		w.drop(1)
	}
}

func (w *Writer) drop(n int) {
	if w.dropped != nil {
		w.dropped(n)
	}
}

// Stop writes what is buffered and ends the writer. A record added after
// it (a request that outlived its configuration's grace period) is not
// written.
func (w *Writer) Stop() {
	close(w.quit)
	<-w.done
}

func (w *Writer) run() {
	defer close(w.done)
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	batch := make([]Record, 0, flushSize)
	for {
		select {
		case r := <-w.in:
			batch = w.add(batch, r)
		case <-t.C:
			batch = w.flush(batch)
		case <-w.quit:
			for {
				select {
				case r := <-w.in:
					batch = w.add(batch, r)
				default:
					w.flush(batch)
					return
				}
			}
		}
	}
}

// add appends r to batch, and writes the batch once it is full.
func (w *Writer) add(batch []Record, r Record) []Record {
	batch = append(batch, r)
	if len(batch) == flushSize {
		return w.flush(batch)
	}
	return batch
}

// flush writes batch and returns it emptied. A batch that fails is
// dropped: the log is for people, and the queue, not the log, keeps
// deliveries.
func (w *Writer) flush(batch []Record) []Record {
	if len(batch) == 0 {
		return batch
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.log.Append(ctx, batch); err != nil {
		w.drop(len(batch))
		w.logger.Warn("writing the delivery log; dropped a batch of records", zap.Int("records", len(batch)), zap.Error(err))
	}
	return batch[:0]
}
