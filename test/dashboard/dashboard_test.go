// Package dashboard tests the gateway's web dashboard in a real headless
// Chromium against a real `sluice dev`: demo app processes, the local
// proxy, the embedded Prometheus, the gateway's API and event stream.
package dashboard

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"golang.org/x/crypto/bcrypt"

	"github.com/sluicehq/sluice/internal/devtest"
)

// The whole path a person takes: the list, a canary opened while it runs,
// its charts filling in live, Promote with its confirmation, and the
// rollout completing. Pages are also checked on a phone's width and in
// the dark theme, and photographed for docs/dashboard.md with -update.
func TestDashboard(t *testing.T) {
	chrome := chromePath(t)
	d := devtest.Start(t, devtest.Options{})
	d.Apply(devtest.SuccessRate(d.Prom))
	checkoutListen := devtest.FreeAddr(t)
	d.Apply(rollout("checkout", "shop", checkoutListen, "v1", "- setWeight: 50\n- pause: {duration: 10m}\n"), "--wait", "--timeout", "2m")
	listen := devtest.FreeAddr(t)
	steps := `- setWeight: 20
- pause: {}
- analysis:
    templates: [{templateName: success-rate}]
    args: [{name: rollout, value: web}]
- setWeight: 60
- pause: {}
`
	d.Apply(rollout("web", "default", listen, "v1", steps), "--wait", "--timeout", "2m")

	b := newBrowser(t, chrome)
	base := "http://" + d.Dashboard
	b.navigate(base + "/")
	b.wait("the list shows both rollouts Healthy", time.Minute, `
		['default/web', 'shop/checkout'].map((k) => {
			const row = document.querySelector('tr[data-rollout="' + k + '"]');
			return !row ? k + ' missing' : row.dataset.phase === 'Healthy' ? '' : k + ' is ' + row.dataset.phase;
		}).filter(Boolean).join('; ')`)

	// The update starts while the list is open: its row follows the events.
	stop := devtest.Load(listen, nil)
	defer stop()
	d.Apply(rollout("web", "default", listen, "v2", steps))
	b.wait("the list's row of web turns Paused at 20% without a reload", 2*time.Minute, `(() => {
		const row = document.querySelector('tr[data-rollout="default/web"]');
		const s = row.querySelector('.badge').textContent + ' ' + row.querySelector('.w-canary').textContent + ' ' + row.querySelector('.num').textContent;
		return s === 'Paused 20% 1/5' ? '' : s;
	})()`)
	b.screenshot("dashboard-list.png")

	b.click(`tr[data-rollout="default/web"] a.name`)
	b.wait("the rollout page shows web paused at its first pause", time.Minute, `(() => {
		const s = document.querySelector('h1')?.textContent + ' ' + document.querySelector('.page-head .badge')?.textContent + ' ' + document.querySelector('.steps li.current')?.textContent;
		return s.startsWith('web Paused pause') ? '' : s;
	})()`)
	weightPoints := eval[int](b, `Number(document.querySelector('#weight-chart svg').dataset.points)`)
	if n := eval[int](b, `document.querySelectorAll('[data-metric] svg').length`); n != 0 {
		t.Fatalf("a measurement chart before the analysis started: %d", n)
	}

	// By keyboard: Enter on Promote opens the confirmation with the focus
	// on its button; Escape cancels, and the focus goes back to Promote.
	b.wait("promote is enabled", time.Minute, `document.querySelector('[data-action="promote"]').disabled ? 'disabled' : ''`)
	b.do("focus Promote and press Enter", chromedp.Focus(chromedp.CSS(`[data-action="promote"]`)), chromedp.KeyEvent(kb.Enter))
	b.wait("the confirmation opens with the focus on its button", 10*time.Second,
		`document.getElementById('confirm').open && document.activeElement.id === 'confirm-ok' ? '' : 'focus on ' + document.activeElement.outerHTML.slice(0, 80)`)
	b.do("press Escape", chromedp.KeyEvent(kb.Escape))
	b.wait("Escape closes the dialog and gives the focus back", 10*time.Second,
		`!document.getElementById('confirm').open && document.activeElement.dataset.action === 'promote' ? '' : 'focus on ' + document.activeElement.outerHTML.slice(0, 80)`)
	if s := eval[string](b, `document.getElementById('command-status').textContent`); s != "" {
		t.Fatalf("a cancelled confirmation sent a command: %q", s)
	}

	// Promote past the pause: the analysis runs while the page is open.
	b.command("promote")
	b.wait("the measurement chart shows the analysis's three measurements", 2*time.Minute, `(() => {
		const svg = document.querySelector('[data-metric="success-rate"] svg');
		if (!svg) return 'no chart yet';
		const lines = svg.querySelectorAll('.threshold').length;
		return svg.dataset.points === '3' && lines > 0 ? '' : svg.dataset.points + ' points, ' + lines + ' threshold lines';
	})()`)
	b.wait("the weight chart grows to 60% and the rollout pauses at the last step", 2*time.Minute, fmt.Sprintf(`(() => {
		const svg = document.querySelector('#weight-chart svg');
		const s = document.querySelector('.page-head .badge').textContent + ' ' + document.querySelector('.facts .w-canary').textContent + ' ' + document.querySelector('.steps li.current')?.textContent;
		return Number(svg.dataset.points) > %d && s.startsWith('Paused 60%% pause') ? '' : svg.dataset.points + ' points; ' + s;
	})()`, weightPoints))
	b.wait("the timeline shows the promote, who sent it, and what it caused", 30*time.Second, `(() => {
		const items = [...document.querySelectorAll('.timeline li')];
		const cmd = items.find((l) => l.dataset.type === 'io.sluice.rollout.promote.v1');
		const caused = items.find((l) => l.dataset.type === 'io.sluice.rollout.resumed.v1');
		if (!cmd || !cmd.querySelector('.actor')) return 'no promote with an actor in the timeline';
		const cause = caused?.querySelector('.cause')?.textContent || '';
		return cause.startsWith('← promote by ') ? '' : 'the resume says it was caused by: ' + cause;
	})()`)
	b.screenshot("dashboard-rollout.png")

	b.command("promote")
	b.wait("the rollout completes: Healthy, all traffic on the new revision", 2*time.Minute, `(() => {
		const s = document.querySelector('.page-head .badge').textContent + ' ' + document.querySelector('.facts .w-stable').textContent + ' ' + document.querySelector('.facts dd .num')?.textContent;
		return s === 'Healthy 100% 5/5' ? '' : s;
	})()`)
	b.wait("a Healthy rollout cannot be promoted or aborted", 30*time.Second, `
		['promote', 'promote-full', 'abort', 'retry'].filter((a) => !document.querySelector('[data-action="' + a + '"]').disabled).join(', ')`)
	stop()

	b.click("#theme")
	b.wait("the dark theme is on", 10*time.Second, `document.documentElement.dataset.theme === 'dark' ? '' : 'theme ' + document.documentElement.dataset.theme`)
	b.screenshot("dashboard-dark.png")
	b.click("#theme")

	// A timed pause counts down on its step.
	d.Apply(rollout("checkout", "shop", checkoutListen, "v2", "- setWeight: 50\n- pause: {duration: 10m}\n"))
	b.navigate(base + "/#/ns/shop/checkout")
	b.wait("the timed pause shows the time left", time.Minute, `(() => {
		const c = document.querySelector('.steps li.current .countdown');
		return c && / left$/.test(c.textContent) ? '' : 'current step: ' + document.querySelector('.steps li.current')?.textContent;
	})()`)
	left := eval[string](b, `document.querySelector('.steps li.current .countdown').textContent`)
	b.wait("the time left counts down from "+left, 30*time.Second, `(() => {
		const now = document.querySelector('.steps li.current .countdown').textContent;
		return now !== `+jsString(left)+` && / left$/.test(now) ? '' : now;
	})()`)

	// The filters are kept in the URL.
	b.navigate(base + "/#/?namespace=shop&phase=Paused")
	b.wait("the filtered list shows only shop's paused rollout", time.Minute, `(() => {
		const rows = [...document.querySelectorAll('tr[data-rollout]')].map((r) => r.dataset.rollout).join(' ');
		const form = document.getElementById('f-namespace').value + ' ' + document.getElementById('f-phase').value;
		return rows === 'shop/checkout' && form === 'shop Paused' ? '' : 'rows: ' + rows + '; form: ' + form;
	})()`)

	// A phone: nothing may scroll sideways.
	b.do("emulate a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulatePortrait))
	for _, page := range []string{"/#/", "/#/ns/default/web"} {
		b.navigate(base + page)
		b.wait("the page renders on a phone: "+page, time.Minute, `document.querySelector('tr[data-rollout], .timeline li') ? '' : 'not rendered'`)
		b.wait("nothing scrolls sideways at 390px: "+page, 10*time.Second, `document.documentElement.scrollWidth <= 390 ? '' : 'scrollWidth ' + document.documentElement.scrollWidth`)
	}
	b.screenshot("dashboard-phone.png")
}

// A person signs in through the sign-in page the dashboard sends them
// to, sends a command from the session (which needs the CSRF header), and
// signs out; a viewer's token then shows the rollout with no buttons.
func TestSignInOperatorAndViewer(t *testing.T) {
	chrome := chromePath(t)
	const token = "viewer-token-for-the-dashboard-test"
	sum := sha256.Sum256([]byte(token))
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	authFile := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(authFile, []byte(fmt.Sprintf(`users:
- name: alice
  passwordHash: %q
tokens:
- name: viewer
  hash: sha256:%s
roles:
- role: operator
  subjects: ["user:alice"]
  namespaces: ["default"]
- role: viewer
  subjects: ["token:viewer"]
  namespaces: ["*"]
`, hash, hex.EncodeToString(sum[:]))), 0o600); err != nil {
		t.Fatal(err)
	}
	d := devtest.Start(t, devtest.Options{Args: []string{"--dashboard-auth", authFile}})
	d.Apply(rollout("web", "default", devtest.FreeAddr(t), "v1", "- setWeight: 50\n- pause: {}\n"), "--wait", "--timeout", "2m")
	base := "http://" + d.Dashboard
	b := newBrowser(t, chrome)

	b.navigate(base + "/#/ns/default/web")
	b.wait("a caller who is not signed in is sent to the sign-in page, to come back", 30*time.Second,
		`location.pathname === '/auth/login' && new URLSearchParams(location.search).get('next') === '/#/ns/default/web' ? '' : location.href`)
	b.wait("the sign-in form is there", 10*time.Second, `document.getElementById('username') ? '' : 'no form'`)
	b.do("sign in as alice",
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), "alice-password"),
		chromedp.Submit(chromedp.ID("password")))
	b.wait("alice is back on the rollout's page, signed in", 30*time.Second, `(() => {
		const s = location.hash + ' ' + document.getElementById('who').textContent + ' ' + document.querySelector('h1')?.textContent;
		return s === '#/ns/default/web user:aliceSign out web' ? '' : s;
	})()`)
	b.wait("an operator gets the commands but not Delete", 10*time.Second, `(() => {
		const got = [...document.querySelectorAll('[data-action]')].map((b) => b.dataset.action).join(' ');
		return got === 'promote promote-full pause resume abort retry undo restart' ? '' : got;
	})()`)
	// From a session the gateway takes a command only with the CSRF
	// header; "done" shows the page sent it.
	b.command("restart")

	b.click("#signout")
	b.wait("signing out leads to the sign-in page", 30*time.Second, `location.pathname === '/auth/login' ? '' : location.href`)

	b.header("Authorization", "Bearer "+token)
	b.navigate(base + "/#/ns/default/web")
	// The buttons are built with the page, before its data arrives: once
	// the timeline is there, a button that is not is not coming.
	b.wait("the viewer sees the rollout and its timeline", time.Minute, `(() => {
		const s = document.querySelector('h1')?.textContent + ' ' + document.querySelector('.page-head .badge')?.textContent;
		return s === 'web Healthy' && document.querySelector('.timeline li') ? '' : s;
	})()`)
	if n := eval[int](b, `document.querySelectorAll('.actions button, [data-action]').length`); n != 0 {
		t.Errorf("a viewer got %d action buttons", n)
	}
	if who := eval[string](b, `document.getElementById('who').textContent`); who != "token:viewer" {
		t.Errorf("the header shows %q, want the caller token:viewer and no Sign out", who)
	}
}

// command presses an action's button, confirms, and waits for the
// gateway's answer "done" in the status line.
func (b *browser) command(action string) {
	b.t.Helper()
	sel := `[data-action="` + action + `"]`
	b.wait(action+" is enabled", time.Minute, `document.querySelector('`+sel+`').disabled ? 'disabled: ' + document.querySelector('`+sel+`').title : ''`)
	b.click(sel)
	b.wait("the confirmation dialog opens", 10*time.Second, `document.getElementById('confirm').open ? '' : 'closed'`)
	b.click("#confirm-ok")
	b.wait("the gateway answers "+action+" with done", time.Minute, `(() => {
		const s = document.getElementById('command-status');
		return s.dataset.outcome === 'done' ? '' : (s.dataset.outcome || 'no answer') + ': ' + s.textContent;
	})()`)
}

// rollout is a demoapp Rollout in namespace ns whose proxy listens on
// listen, with weighted routing and the given steps.
func rollout(name, ns, listen, version, steps string) string {
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: %[1]s
  namespace: %[2]s
  annotations:
    local.sluice.io/listen: %[3]s
spec:
  replicas: 1
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      containers:
      - name: app
        image: demoapp
        command: ["bin/demoapp"]
        env:
        - {name: VERSION, value: %[4]s}
        ports:
        - {name: http, containerPort: 8080}
        readinessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 1
  strategy:
    canary:
      canaryService: %[1]s-canary
      stableService: %[1]s-stable
      trafficRouting:
        istio:
          virtualService: {name: %[1]s, routes: [primary]}
      steps:
%[5]s`, name, ns, listen, version, indent(steps, "      "))
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}
