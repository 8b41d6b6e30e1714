package dashboard

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandlerServesFilesWithTheirTypes(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	cases := []struct {
		path, wantType, wantBody string
		wantCode                 int
	}{
		{"/", "text/html", `<script type="module" src="app.js">`, 200},
		{"/index.html", "text/html", "<!doctype html>", 200},
		{"/app.js", "text/javascript", "import", 200},
		{"/style.css", "text/css", ":root", 200},
		{"/favicon.svg", "image/svg+xml", "<svg", 200},
		{"/nope.js", "", "", 404},
		{"/static/", "", "", 404},
		{"/../dashboard.go", "", "", 404},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + c.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.wantCode {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.wantCode)
			}
			if c.wantCode != 200 {
				return
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, c.wantType) {
				t.Errorf("Content-Type %q, want %s", ct, c.wantType)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("Cache-Control %q, want no-cache", cc)
			}
			if !strings.Contains(string(body), c.wantBody) {
				t.Errorf("body does not contain %q", c.wantBody)
			}
		})
	}
}

func TestHandlerRevalidatesWithETag(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/app.js")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/app.js", nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("status %d with If-None-Match, want 304", resp.StatusCode)
	}
}

func TestEveryModuleIsEmbedded(t *testing.T) {
	// A module the page imports but the binary lacks breaks the page
	// without a build error; check every import resolves.
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, name := range []string{"app.js", "api.js", "ui.js", "list.js", "rollout.js", "charts.js", "experiments.js", "rows.js"} {
		resp, err := http.Get(srv.URL + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", name, resp.StatusCode)
		}
		for _, line := range strings.Split(string(body), "\n") {
			if i := strings.Index(line, "from './"); strings.HasPrefix(line, "import") && i >= 0 {
				dep := strings.TrimSuffix(strings.TrimSuffix(line[i+len("from './"):], ";"), "'")
				r, err := http.Get(srv.URL + "/" + dep)
				if err != nil {
					t.Fatal(err)
				}
				r.Body.Close()
				if r.StatusCode != 200 {
					t.Errorf("%s imports %s: status %d", name, dep, r.StatusCode)
				}
			}
		}
	}
}
