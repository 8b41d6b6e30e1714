package auth

import (
	"testing"
	"time"
)

func TestSealedCookies(t *testing.T) {
	s := sealer{key: randomBytes(32)}
	now := time.Now()
	v := seal(s, SessionCookie, session{ID: "1", Actor: "user:alice"}, now.Add(time.Minute))
	for _, tc := range []struct {
		name    string
		key     sealer
		purpose string
		cookie  string
		at      time.Time
		ok      bool
	}{
		{"valid", s, SessionCookie, v, now, true},
		{"expired", s, SessionCookie, v, now.Add(time.Minute), false},
		{"another purpose: an OIDC flow cookie is no session", s, flowCookie, v, now, false},
		{"another key: another gateway's", sealer{key: randomBytes(32)}, SessionCookie, v, now, false},
		{"no signature", s, SessionCookie, v[:len(v)-44], now, false},
		{"garbage", s, SessionCookie, "x.y", now, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := unseal[session](tc.key, tc.purpose, tc.cookie, tc.at)
			if (err == nil) != tc.ok {
				t.Fatalf("unseal: %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && got.Actor != "user:alice" {
				t.Errorf("unsealed %+v", got)
			}
		})
	}
}
