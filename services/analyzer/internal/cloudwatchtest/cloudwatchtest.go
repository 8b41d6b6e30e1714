// Package cloudwatchtest is a CloudWatch for tests: the GetMetricData
// operation as aws-sdk-go-v2/service/cloudwatch (v1.76.0) calls it, over
// Smithy RPC v2 CBOR (POST /service/GraniteServiceVersion20100801/operation/GetMetricData,
// Smithy-Protocol: rpc-v2-cbor, CBOR bodies, AWS query-compatible error
// codes in X-Amzn-Query-Error).
//
// The server checks what a real endpoint checks first: the protocol
// headers, and a SigV4 Authorization header signed for the "monitoring"
// service in Region with AccessKeyID and SecretAccessKey (the signature is
// recomputed). A request that fails either is answered 403 (or 400) as
// CloudWatch answers it, so a client that does not sign cannot pass.
package cloudwatchtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go/encoding/cbor"
)

// The credentials and region the server accepts.
const (
	AccessKeyID     = "AKIASLUICETEST000001"
	SecretAccessKey = "sluice-test-secret-access-key-0001"
	Region          = "eu-west-3"
	// SigningName is CloudWatch's SigV4 service name.
	SigningName = "monitoring"
	// Path is where the SDK posts GetMetricData.
	Path = "/service/GraniteServiceVersion20100801/operation/GetMetricData"
)

// Query is one MetricDataQuery as the server received it.
type Query struct {
	ID, Expression, Label string
	// Period is the query's own period (0: unset).
	Period     int64
	ReturnData *bool
	MetricStat *MetricStat
}

// MetricStat is a query's metricStat as received.
type MetricStat struct {
	Namespace, MetricName string
	// Dimensions are "name=value", in order.
	Dimensions []string
	Period     int64
	Stat, Unit string
}

// Request is one GetMetricData call as received.
type Request struct {
	StartTime, EndTime time.Time
	NextToken          string
	Queries            []Query
}

// Result is one MetricDataResult to answer with.
type Result struct {
	ID, Label  string
	Timestamps []time.Time
	Values     []float64
	// StatusCode is "Complete" unless set.
	StatusCode string
	// Messages are "code: value" pairs.
	Messages [][2]string
}

// Page is one GetMetricData response. The server sets NextToken itself.
type Page struct {
	Results  []Result
	Messages [][2]string
}

// Error is an error response: the HTTP status, the error code (as both the
// CBOR body's __type and the X-Amzn-Query-Error header carry it) and
// message.
type Error struct {
	Status  int
	Code    string
	Message string
}

// CloudWatch's errors as its API reference and the AWS common errors list
// them.
var (
	Throttling      = Error{Status: http.StatusBadRequest, Code: "Throttling", Message: "Rate exceeded"}
	TooManyRequests = Error{Status: http.StatusTooManyRequests, Code: "Throttling", Message: "Rate exceeded"}
	InternalFailure = Error{Status: http.StatusInternalServerError, Code: "InternalFailure", Message: "The request processing has failed because of an unknown error, exception or failure."}
	AccessDenied    = Error{Status: http.StatusForbidden, Code: "AccessDenied", Message: "User: arn:aws:iam::123456789012:user/sluice is not authorized to perform: cloudwatch:GetMetricData"}
)

// Server is a running fake CloudWatch. Its methods are safe for concurrent
// use.
type Server struct {
	// URL is the endpoint: AWS_ENDPOINT_URL_CLOUDWATCH.
	URL string

	// caBundle is the PEM file of the TLS server's certificate (StartTLS).
	caBundle string

	mu       sync.Mutex
	pages    []Page
	fail     *Error
	stall    bool
	requests []Request
	rejected []string
}

// Start serves until the test ends. It answers every request with one empty
// Complete page until SetPages says otherwise.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// StartTLS is Start over HTTPS with a certificate of its own, which Env
// names as AWS_CA_BUNDLE: a client trusts it only through the SDK's CA
// bundle setting.
func StartTLS(t testing.TB) *Server {
	t.Helper()
	s := &Server{}
	srv := httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	s.caBundle = filepath.Join(t.TempDir(), "cloudwatchtest-ca.pem")
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(s.caBundle, block, 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// SetPages makes GetMetricData answer with pages: the first for a request
// without NextToken, each next one for the token the previous one gave.
func (s *Server) SetPages(pages ...Page) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pages = pages
}

// Fail makes every signed request fail with e.
func (s *Server) Fail(e Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = &e
}

// Stall makes every signed request wait until the client gives up.
func (s *Server) Stall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stall = true
}

// Requests returns the well-formed, signed GetMetricData calls received.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Rejected returns why each refused request was refused.
func (s *Server) Rejected() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.rejected...)
}

// Env is the environment that points the AWS SDK's default chain at the
// server with its credentials, and away from everything on the host
// (shared config files, profiles, EC2 metadata, a CA bundle other than
// StartTLS's): for a subprocess.
func (s *Server) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL_CLOUDWATCH=" + s.URL,
		"AWS_ACCESS_KEY_ID=" + AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + SecretAccessKey,
		"AWS_REGION=" + Region,
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_DEFAULT_PROFILE=",
		"AWS_CONFIG_FILE=/nonexistent/sluice-cloudwatchtest/config",
		"AWS_SHARED_CREDENTIALS_FILE=/nonexistent/sluice-cloudwatchtest/credentials",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_WEB_IDENTITY_TOKEN_FILE=",
		"AWS_ROLE_ARN=",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI=",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=",
		"AWS_ENDPOINT_URL=",
		"AWS_MAX_ATTEMPTS=",
		"AWS_RETRY_MODE=",
		"AWS_CA_BUNDLE=" + s.caBundle,
	}
}

// AWSConfig is an aws.Config for the server with its credentials, for a
// client built without the default chain.
func (s *Server) AWSConfig() aws.Config {
	return aws.Config{
		Region:       Region,
		BaseEndpoint: aws.String(s.URL),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: SecretAccessKey, Source: "cloudwatchtest"}, nil
		}),
	}
}

// Setenv sets Env for the rest of t (so t may not be parallel).
func (s *Server) Setenv(t testing.TB) {
	t.Helper()
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		s.reject(w, Error{Status: http.StatusBadRequest, Code: "MalformedInput", Message: "unreadable body"}, err.Error())
		return
	}
	if e, why := checkProtocol(r); e != nil {
		s.reject(w, *e, why)
		return
	}
	if e, why := checkSignature(r, body); e != nil {
		s.reject(w, *e, why)
		return
	}
	req, err := decodeRequest(body)
	if err != nil {
		s.reject(w, Error{Status: http.StatusBadRequest, Code: "ValidationError", Message: err.Error()}, err.Error())
		return
	}

	s.mu.Lock()
	s.requests = append(s.requests, req)
	fail, stall, pages := s.fail, s.stall, s.pages
	s.mu.Unlock()

	if stall {
		<-r.Context().Done()
		return
	}
	if fail != nil {
		writeError(w, *fail)
		return
	}
	i := 0
	if req.NextToken != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(req.NextToken, "page-"))
		if err != nil || n <= 0 || n >= len(pages) {
			writeError(w, Error{Status: http.StatusBadRequest, Code: "InvalidNextToken", Message: "The service cannot decode the NextToken."})
			return
		}
		i = n
	}
	var page Page
	if i < len(pages) {
		page = pages[i]
	}
	next := ""
	if i+1 < len(pages) {
		next = "page-" + strconv.Itoa(i+1)
	}
	w.Header().Set("Content-Type", "application/cbor")
	w.Header().Set("Smithy-Protocol", "rpc-v2-cbor")
	_, _ = w.Write(cbor.Encode(encodePage(page, next)))
}

func (s *Server) reject(w http.ResponseWriter, e Error, why string) {
	s.mu.Lock()
	s.rejected = append(s.rejected, why)
	s.mu.Unlock()
	writeError(w, e)
}

func writeError(w http.ResponseWriter, e Error) {
	fault := "Sender"
	if e.Status >= 500 {
		fault = "Receiver"
	}
	w.Header().Set("Content-Type", "application/cbor")
	w.Header().Set("Smithy-Protocol", "rpc-v2-cbor")
	w.Header().Set("X-Amzn-Query-Error", e.Code+";"+fault)
	w.WriteHeader(e.Status)
	_, _ = w.Write(cbor.Encode(cbor.Map{
		"__type":  cbor.String("com.amazonaws.cloudwatch#" + e.Code),
		"message": cbor.String(e.Message),
	}))
}

// checkProtocol checks the request line and headers of an RPC v2 CBOR call.
func checkProtocol(r *http.Request) (*Error, string) {
	switch {
	case r.Method != http.MethodPost:
		return &Error{Status: http.StatusMethodNotAllowed, Code: "UnknownOperationException", Message: "method " + r.Method}, "method " + r.Method
	case r.URL.Path != Path:
		return &Error{Status: http.StatusNotFound, Code: "UnknownOperationException", Message: "unknown operation " + r.URL.Path}, "path " + r.URL.Path
	case r.Header.Get("Smithy-Protocol") != "rpc-v2-cbor":
		return &Error{Status: http.StatusBadRequest, Code: "MalformedInput", Message: "missing Smithy-Protocol: rpc-v2-cbor"}, "Smithy-Protocol " + r.Header.Get("Smithy-Protocol")
	case r.Header.Get("Content-Type") != "application/cbor":
		return &Error{Status: http.StatusUnsupportedMediaType, Code: "MalformedInput", Message: "Content-Type must be application/cbor"}, "Content-Type " + r.Header.Get("Content-Type")
	}
	return nil, ""
}

// checkSignature verifies the SigV4 Authorization header: algorithm,
// access key id, date, region and service of the credential scope, and the
// signature itself, recomputed over the signed headers.
func checkSignature(r *http.Request, body []byte) (*Error, string) {
	deny := func(code, msg string) (*Error, string) {
		return &Error{Status: http.StatusForbidden, Code: code, Message: msg}, code + ": " + msg
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return deny("MissingAuthenticationToken", "Request is missing Authentication Token")
	}
	algo, rest, _ := strings.Cut(auth, " ")
	if algo != "AWS4-HMAC-SHA256" {
		return deny("IncompleteSignature", "unsupported algorithm "+algo)
	}
	fields := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return deny("IncompleteSignature", "Authorization header is incomplete")
	}
	if scope[0] != AccessKeyID {
		return deny("InvalidClientTokenId", "The security token included in the request is invalid.")
	}
	signingTime, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || scope[1] != signingTime.Format("20060102") {
		return deny("IncompleteSignature", "X-Amz-Date is missing or does not match the credential scope")
	}
	if scope[2] != Region || scope[3] != SigningName || scope[4] != "aws4_request" {
		return deny("SignatureDoesNotMatch", fmt.Sprintf("credential scope %s/%s/%s, want %s/%s/aws4_request", scope[2], scope[3], scope[4], Region, SigningName))
	}

	// Re-sign a copy holding only the signed headers; the signer signs
	// every header it is given (but the ignored ones), so the sets match.
	signed := strings.Split(fields["SignedHeaders"], ";")
	clone, _ := http.NewRequestWithContext(context.Background(), r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	clone.Host = r.Host
	clone.ContentLength = r.ContentLength
	clone.Header = http.Header{}
	for _, h := range signed {
		if h == "host" || h == "content-length" {
			continue
		}
		clone.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, clone, hex.EncodeToString(sum[:]), SigningName, Region, signingTime); err != nil {
		return deny("SignatureDoesNotMatch", err.Error())
	}
	want := clone.Header.Get("Authorization")
	if want != auth {
		return deny("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
	}
	return nil, ""
}

func decodeRequest(body []byte) (Request, error) {
	v, err := cbor.Decode(body)
	if err != nil {
		return Request{}, fmt.Errorf("body is not CBOR: %w", err)
	}
	m, ok := v.(cbor.Map)
	if !ok {
		return Request{}, fmt.Errorf("body is a %T, not a map", v)
	}
	var req Request
	if req.StartTime, err = cbor.AsTime(m["StartTime"]); err != nil {
		return Request{}, fmt.Errorf("StartTime: %w", err)
	}
	if req.EndTime, err = cbor.AsTime(m["EndTime"]); err != nil {
		return Request{}, fmt.Errorf("EndTime: %w", err)
	}
	if !req.StartTime.Before(req.EndTime) {
		return Request{}, errors.New("The parameter StartTime must be less than the parameter EndTime.")
	}
	req.NextToken = str(m["NextToken"])
	qs, _ := m["MetricDataQueries"].(cbor.List)
	if len(qs) == 0 {
		return Request{}, errors.New("The parameter MetricDataQueries is required.")
	}
	for i, qv := range qs {
		qm, ok := qv.(cbor.Map)
		if !ok {
			return Request{}, fmt.Errorf("MetricDataQueries.member.%d is not a map", i+1)
		}
		q := Query{ID: str(qm["Id"]), Expression: str(qm["Expression"]), Label: str(qm["Label"]), Period: integer(qm["Period"])}
		if b, ok := qm["ReturnData"].(cbor.Bool); ok {
			rd := bool(b)
			q.ReturnData = &rd
		}
		if q.ID == "" {
			return Request{}, fmt.Errorf("The parameter MetricDataQueries.member.%d.Id is required.", i+1)
		}
		if sm, ok := qm["MetricStat"].(cbor.Map); ok {
			mm, _ := sm["Metric"].(cbor.Map)
			ms := &MetricStat{Namespace: str(mm["Namespace"]), MetricName: str(mm["MetricName"]), Period: integer(sm["Period"]), Stat: str(sm["Stat"]), Unit: str(sm["Unit"])}
			dims, _ := mm["Dimensions"].(cbor.List)
			for _, d := range dims {
				dm, _ := d.(cbor.Map)
				ms.Dimensions = append(ms.Dimensions, str(dm["Name"])+"="+str(dm["Value"]))
			}
			q.MetricStat = ms
		}
		if (q.Expression == "") == (q.MetricStat == nil) {
			return Request{}, fmt.Errorf("MetricDataQueries.member.%d must set exactly one of Expression and MetricStat", i+1)
		}
		req.Queries = append(req.Queries, q)
	}
	return req, nil
}

func encodePage(p Page, next string) cbor.Map {
	results := cbor.List{}
	for _, r := range p.Results {
		status := r.StatusCode
		if status == "" {
			status = "Complete"
		}
		ts := cbor.List{}
		for _, t := range r.Timestamps {
			ts = append(ts, &cbor.Tag{ID: 1, Value: cbor.Float64(float64(t.UnixMilli()) / 1e3)})
		}
		values := cbor.List{}
		for _, v := range r.Values {
			values = append(values, cbor.Float64(v))
		}
		res := cbor.Map{"Id": cbor.String(r.ID), "Timestamps": ts, "Values": values, "StatusCode": cbor.String(status)}
		if r.Label != "" {
			res["Label"] = cbor.String(r.Label)
		}
		if len(r.Messages) > 0 {
			res["Messages"] = messages(r.Messages)
		}
		results = append(results, res)
	}
	out := cbor.Map{"MetricDataResults": results}
	if len(p.Messages) > 0 {
		out["Messages"] = messages(p.Messages)
	}
	if next != "" {
		out["NextToken"] = cbor.String(next)
	}
	return out
}

func messages(ms [][2]string) cbor.List {
	out := cbor.List{}
	for _, m := range ms {
		out = append(out, cbor.Map{"Code": cbor.String(m[0]), "Value": cbor.String(m[1])})
	}
	return out
}

func str(v cbor.Value) string {
	s, _ := v.(cbor.String)
	return string(s)
}

func integer(v cbor.Value) int64 {
	n, err := cbor.AsInt64(v)
	if err != nil {
		return 0
	}
	return n
}
