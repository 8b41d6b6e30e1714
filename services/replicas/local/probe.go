package local

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
)

// probeTransport is shared by every HTTP probe. Like the kubelet's, it does
// not keep connections alive between probes, does not verify HTTPS
// certificates, and ignores HTTP_PROXY.
var probeTransport = &http.Transport{
	DisableKeepAlives: true,
	TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
}

// check runs the probe once against a process reached at host:port (the
// probe's own host, when set, wins). A nil error is a success.
func (pr *probe) check(ctx context.Context, host string, port int) error {
	if pr.host != "" {
		host = pr.host
	}
	addr := net.JoinHostPort(host, strconv.Itoa(pr.port.resolve(port)))
	ctx, cancel := context.WithTimeout(ctx, pr.timeout)
	defer cancel()
	if !pr.http {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pr.scheme+"://"+addr+pr.path, nil)
	if err != nil {
		return err
	}
	for k, vs := range pr.headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if h := pr.headers.Get("Host"); h != "" {
		req.Host = h
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "sluice-probe")
	}
	client := http.Client{
		Transport: probeTransport,
		// A redirect counts as success, as its 3xx code does for Kubernetes.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with status code %d", resp.StatusCode)
	}
	return nil
}
