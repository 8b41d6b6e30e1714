package jsonlead

import "testing"

func TestFields(t *testing.T) {
	for _, c := range []struct {
		data   string
		ok     bool
		wakeup string
	}{
		{`{"wakeup":"x","phase":"Healthy","state":{"a":1}}`, true, `"x"`},
		{`{"phase":"Healthy","wakeup":null,"state":{}}`, true, `null`},
		{`{"state":{},"wakeup":"x","phase":"p"}`, false, ``}, // another key first
		{`{"wakeup":"x"}`, false, ``},                        // phase missing
		{`["wakeup"]`, false, ``},
		{`not json`, false, ``},
	} {
		got, ok := Fields([]byte(c.data), "wakeup", "phase")
		if ok != c.ok || (ok && string(got["wakeup"]) != c.wakeup) {
			t.Errorf("Fields(%s) = %s, %v; want wakeup %s, %v", c.data, got["wakeup"], ok, c.wakeup, c.ok)
		}
	}
}
