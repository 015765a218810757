package http

import (
	"context"
	"math"
	nethttp "net/http"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/platterhq/platter/messages"
)

// Feeds (API.md, "Feeds"): GET …/feed?after=CURSOR&wait=SECONDS long-polls the feed actor. Entries after the
// cursor are answered at once; otherwise the poll parks in the actor until an entry arrives (answered within
// milliseconds) or the wait ends (204 No Content). The wait is at most Config.MaxPollWait (default 30 s, default
// wait 25 s) and may be fractional ("wait=0.5"); wait=0 never parks. A client may have at most
// Config.MaxPollsPerClient polls waiting (429 TOO_MANY_POLLS), so one client cannot pin the node's goroutines.
// Cursors are the journal's (decimal, increasing, never reused): a client that comes back with its last cursor
// gets every entry it missed, across restarts.

const maxFeedPage = 100

// pollCounter counts the polls waiting per client.
type pollCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (p *pollCounter) acquire(client string, limit int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[client] >= limit {
		return false
	}
	p.n[client]++
	return true
}

func (p *pollCounter) release(client string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[client]--; p.n[client] <= 0 {
		delete(p.n, client)
	}
}

// feedQuery is the parsed query of a feed poll.
type feedQuery struct {
	after uint64
	wait  time.Duration
	limit int32
}

func (s *Server) parseFeedQuery(ctx *fasthttp.RequestCtx) (feedQuery, error) {
	q := feedQuery{wait: s.cfg.DefaultPollWait, limit: maxFeedPage}
	if err := knownQuery(ctx, "after", "wait", "limit"); err != nil {
		return q, err
	}
	after, err := queryString(ctx, "after")
	if err != nil {
		return q, err
	}
	if after != "" {
		if q.after, err = strconv.ParseUint(after, 10, 64); err != nil {
			return q, Errorf(CodeInvalidArgument, "after must be a cursor from a previous page (a decimal number)")
		}
	}
	wait, err := queryString(ctx, "wait")
	if err != nil {
		return q, err
	}
	if ctx.QueryArgs().Has("wait") {
		max := s.cfg.MaxPollWait.Seconds()
		secs, perr := strconv.ParseFloat(wait, 64)
		if perr != nil || math.IsNaN(secs) || secs < 0 || secs > max {
			return q, Errorf(CodeInvalidArgument, "wait must be a number of seconds 0-%g", max)
		}
		q.wait = time.Duration(secs * float64(time.Second))
	}
	limit, err := queryInt(ctx, "limit", maxFeedPage, 1, maxFeedPage)
	if err != nil {
		return q, err
	}
	q.limit = int32(limit)
	return q, nil
}

// poll answers a feed request for the feed of kind/identity.
func (s *Server) poll(c *call, kind, identity string) error {
	q, err := s.parseFeedQuery(c.ctx)
	if err != nil {
		return err
	}
	client := c.client()
	if !s.polls.acquire(client, s.cfg.MaxPollsPerClient) {
		c.ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
		return Errorf(CodeTooManyPolls, "at most %d feed polls may wait at once per client", s.cfg.MaxPollsPerClient)
	}
	defer s.polls.release(client)
	s.metrics.pollsInFlight.Inc()
	defer s.metrics.pollsInFlight.Dec()

	// The call ends with the wait (plus the time to reach the actor), or when the server closes.
	ctx, cancel := context.WithTimeout(s.closing, q.wait+s.cfg.RequestTimeout)
	defer cancel()
	page, err := s.backend.Actors.PollFeed(ctx, kind, identity, &messages.PollFeed{
		After: q.after, WaitMs: q.wait.Milliseconds(), Limit: q.limit,
	})
	if err != nil {
		return err
	}
	if len(page.GetEntries()) == 0 {
		c.ctx.SetStatusCode(nethttp.StatusNoContent)
		return nil
	}
	return s.writeProto(c.ctx, nethttp.StatusOK, page)
}
