package notify

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// StatusError is a vendor's HTTP answer other than a success.
type StatusError struct {
	// Service names the notification service ("webhook github").
	Service string
	Code    int
	// Message is the start of the vendor's answer, for people.
	Message string
}

func (e *StatusError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s answered %d %s", e.Service, e.Code, http.StatusText(e.Code))
	}
	return fmt.Sprintf("%s answered %d %s: %s", e.Service, e.Code, http.StatusText(e.Code), e.Message)
}

// maxMessage bounds how much of a vendor's answer an error keeps.
const maxMessage = 512

// CheckResponse returns nil when resp is a 2xx, and otherwise a
// *StatusError with the start of the body, classified for delivery: 429
// is retried after its Retry-After (seconds or an HTTP date; the
// delivery's backoff without one), 408 and 5xx are retried with backoff,
// every other status is Permanent. It reads the body of a failed
// response; the caller still closes it.
func CheckResponse(service string, resp *http.Response) error {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxMessage))
	err := &StatusError{Service: service, Code: resp.StatusCode, Message: strings.TrimSpace(string(body))}
	if resp.StatusCode == http.StatusTooManyRequests {
		if d, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return RetryAfter(err, d)
		}
	}
	return ClassifyStatus(resp.StatusCode, err)
}

// ClassifyStatus classifies err, a vendor's answer with the HTTP status
// code, for delivery as CheckResponse does: 408, 429 and 5xx are retried
// with backoff (a 429's Retry-After is the caller's to read), every
// other status is Permanent. For a vendor's client library that reports
// the status itself.
func ClassifyStatus(code int, err error) error {
	if code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 {
		return err
	}
	return Permanent(err)
}

// ParseRetryAfter reads a Retry-After header: delay-seconds or an
// HTTP-date (RFC 9110), relative to now. A date in the past is a zero
// delay; an empty or unreadable value is not ok.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
