package history

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// flushInterval is how long a record waits, at most, before its batch is
// written; flushSize is the most records one batch holds, and how many
// waiting records wake the writer before its interval ends.
const (
	flushInterval = 100 * time.Millisecond
	flushSize     = 256
)

// Writer appends records to a log in batches, from one goroutine, so that
// recording costs a request a channel send and no round trip. The
// goroutine takes what waits in the channel every flushInterval, or once
// a batch's worth waits: never a wake-up per record. When Redis is slower
// than the records come, the buffer fills and records are dropped
// (counted), never waited for.
type Writer struct {
	log      *Log
	interval time.Duration // flushInterval, but in tests
	in       chan Record   // never closed: a late Add must not panic
	full     chan struct{}
	dropped  func(n int)
	logger   *zap.Logger
	quit     chan struct{}
	done     chan struct{}
}

// StartWriter starts a writer to l that buffers up to buffer records;
// dropped (if not nil) is told of records dropped, for a metric. Stop
// ends it.
func (l *Log) StartWriter(buffer int, dropped func(n int), logger *zap.Logger) *Writer {
	return l.startWriter(buffer, flushInterval, dropped, logger)
}

func (l *Log) startWriter(buffer int, interval time.Duration, dropped func(n int), logger *zap.Logger) *Writer {
	w := &Writer{log: l, interval: interval, in: make(chan Record, max(buffer, 1)), full: make(chan struct{}, 1), dropped: dropped, logger: logger,
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
		return
	}
	if len(w.in) >= min(flushSize, cap(w.in)) { // a batch, or a smaller buffer full
		select {
		case w.full <- struct{}{}:
		default: // already told
		}
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
	t := time.NewTicker(w.interval)
	defer t.Stop()
	batch := make([]Record, 0, flushSize)
	for {
		select {
		case <-t.C:
		case <-w.full:
		case <-w.quit:
			w.drain(batch)
			return
		}
		w.drain(batch)
	}
}

// drain writes what waits in the channel, in batches of up to flushSize
// records, in batch's room.
func (w *Writer) drain(batch []Record) {
	for {
		batch = w.take(batch[:0])
		w.flush(batch)
		if len(batch) < flushSize {
			return
		}
	}
}

// take appends to batch what waits in the channel, up to flushSize
// records.
func (w *Writer) take(batch []Record) []Record {
	for len(batch) < flushSize {
		select {
		case r := <-w.in:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// flush writes batch. A batch that fails is dropped: the log is for
// people, and the queue, not the log, keeps deliveries.
func (w *Writer) flush(batch []Record) {
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.log.Append(ctx, batch); err != nil {
		w.drop(len(batch))
		w.logger.Warn("writing the delivery log; dropped a batch of records", zap.Int("records", len(batch)), zap.Error(err))
	}
}
