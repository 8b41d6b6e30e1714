package graphite

import (
	"errors"
	"math"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestRenderQuery(t *testing.T) {
	tests := []struct {
		name      string
		query     string
		want      url.Values
		wantQuery string
		wantErr   string
	}{
		{"target and from", "target=sumSeries(app.http.*.count)&from=-2min",
			url.Values{"target": {"sumSeries(app.http.*.count)"}, "from": {"-2min"}, "format": {"json"}}, "target=sumSeries(app.http.*.count)&from=-2min", ""},
		{"whitespace removed, as Argo does", "\n  target=summarize(\n    app.http.count,\n    '5min', 'avg')\n  &from=-10min \t\n",
			url.Values{"target": {"summarize(app.http.count,'5min','avg')"}, "from": {"-10min"}, "format": {"json"}}, "target=summarize(app.http.count,'5min','avg')&from=-10min", ""},
		{"format is always json", "target=a.b&format=png",
			url.Values{"target": {"a.b"}, "format": {"json"}}, "target=a.b&format=png", ""},
		{"several targets and until", "target=a.b&target=c.d&from=-1h&until=now",
			url.Values{"target": {"a.b", "c.d"}, "from": {"-1h"}, "until": {"now"}, "format": {"json"}}, "", ""},
		{"escaped characters", "target=aliasByNode(a.%7Bb%2Cc%7D.d,1)",
			url.Values{"target": {"aliasByNode(a.{b,c}.d,1)"}, "format": {"json"}}, "", ""},
		{"no target", "from=-5min", nil, "from=-5min", `query "from=-5min" has no target parameter; want target=<expression>&from=-5min`},
		{"empty", "  ", nil, "", `query "" has no target parameter; want target=<expression>&from=-5min`},
		{"a bare target expression", "sumSeries(a.b)", nil, "", `query "sumSeries(a.b)" has no target parameter; want target=<expression>&from=-5min`},
		{"bad escape", "target=a%zz", nil, "", `query "target=a%zz" is not a URL query string: invalid URL escape "%zz"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, q, err := renderQuery(tc.query)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("params = %v, want %v", got, tc.want)
			}
			if tc.wantQuery != "" && q != tc.wantQuery {
				t.Errorf("query = %q, want %q", q, tc.wantQuery)
			}
		})
	}
}

func TestRenderURL(t *testing.T) {
	params := url.Values{"target": {"a.b"}, "format": {"json"}}
	tests := []struct {
		name, address, want, wantErr string
	}{
		{"host", "http://graphite:8080", "http://graphite:8080/render?format=json&target=a.b", ""},
		{"trailing slash", "https://graphite.example.com/", "https://graphite.example.com/render?format=json&target=a.b", ""},
		{"prefix", "http://graphite/graphite", "http://graphite/graphite/render?format=json&target=a.b", ""},
		{"prefix with slash", "http://graphite/graphite/", "http://graphite/graphite/render?format=json&target=a.b", ""},
		{"the address's query and fragment are dropped", "http://graphite/?x=1#f", "http://graphite/render?format=json&target=a.b", ""},
		{"user info kept for basic auth", "http://u:p@graphite", "http://u:p@graphite/render?format=json&target=a.b", ""},
		{"no scheme", "graphite:8080", "", "address is not an http or https URL"},
		{"not http", "ftp://graphite", "", "address is not an http or https URL"},
		{"empty", "", "", "address is not an http or https URL"},
		{"unparsable, never echoed", "http://u:s3cret@gra phite", "", "address is not an http or https URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := renderURL(tc.address, params)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.String() != tc.want {
				t.Errorf("url = %s, want %s", u, tc.want)
			}
		})
	}
}

func TestParseRender(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name    string
		body    string
		want    outcome
		wantErr string
		noData  bool
	}{
		{"one series", `[{"target":"a.b","datapoints":[[1.5,1700000000],[2,1700000060]]}]`,
			outcome{Values: []float64{1.5, 2}, Target: "a.b", Series: 1}, "", false},
		{"nulls left out", `[{"target":"a.b","datapoints":[[null,1700000000],[3,1700000060],[null,1700000120]]}]`,
			outcome{Values: []float64{3}, Target: "a.b", Series: 1}, "", false},
		{"only the first of several series", `[{"target":"a.x","datapoints":[[1,1]]},{"target":"a.y","datapoints":[[9,1]]}]`,
			outcome{Values: []float64{1}, Target: "a.x", Series: 2}, "", false},
		{"string values and timestamps, as Argo accepts", `[{"target":"a","datapoints":[["0.25","1700000000"]]}]`,
			outcome{Values: []float64{0.25}, Target: "a", Series: 1}, "", false},
		{"graphite-web's infinities", `[{"target":"a","datapoints":[[1e9999,1],[-1e9999,2]]}]`,
			outcome{Values: []float64{inf, -inf}, Target: "a", Series: 1}, "", false},
		{"null timestamp", `[{"target":"a","datapoints":[[4,null]]}]`,
			outcome{Values: []float64{4}, Target: "a", Series: 1}, "", false},
		{"extra fields ignored", `[{"target":"a","tags":{"name":"a"},"step":60,"datapoints":[[4,1]]}]`,
			outcome{Values: []float64{4}, Target: "a", Series: 1}, "", false},
		{"no series", `[]`, outcome{}, "no values found: graphite returned no series", true},
		{"no datapoints", `[{"target":"a.b","datapoints":[]}]`, outcome{}, `no values found: series "a.b" has no datapoints`, true},
		{"all null", `[{"target":"a.b","datapoints":[[null,1],[null,2]]},{"target":"a.c","datapoints":[[1,1]]}]`, outcome{},
			`no values found: the 2 datapoints of series "a.b" are all null`, true},
		{"not JSON", `<html>oops</html>`, outcome{}, "response is not render API JSON: invalid character '<' looking for beginning of value", false},
		{"empty body", ``, outcome{}, "response is not render API JSON: unexpected end of JSON input", false},
		{"an object", `{"error":"x"}`, outcome{}, "response is not render API JSON: found a JSON object where a list was expected", false},
		{"a list of numbers", `[1]`, outcome{}, "response is not render API JSON: found a JSON number where a series object was expected", false},
		{"datapoints not a list", `[{"target":"a","datapoints":"x"}]`, outcome{}, "response is not render API JSON: found a JSON string where a list was expected", false},
		{"one-element datapoint", `[{"target":"a","datapoints":[[10]]}]`, outcome{}, `series "a" datapoint 0: not a [value, timestamp] pair: [10]`, false},
		{"list value", `[{"target":"a","datapoints":[[1,1],[[],1]]}]`, outcome{}, `series "a" datapoint 1: value is a list, not a number`, false},
		{"boolean value", `[{"target":"a","datapoints":[[true,1]]}]`, outcome{}, `series "a" datapoint 0: value is a boolean, not a number`, false},
		{"text value", `[{"target":"a","datapoints":[["high",1]]}]`, outcome{}, `series "a" datapoint 0: value "high" is not a number`, false},
		{"bad string timestamp", `[{"target":"a","datapoints":[[100,"f"]]}]`, outcome{}, `series "a" datapoint 0: timestamp "f" is not a number`, false},
		{"list timestamp", `[{"target":"a","datapoints":[[100,[]]]}]`, outcome{}, `series "a" datapoint 0: timestamp is a list, not a number`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRender([]byte(tc.body))
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %s", err, tc.wantErr)
				}
				if errors.Is(err, ErrNoValues) != tc.noData {
					t.Errorf("errors.Is(err, ErrNoValues) = %v, want %v", !tc.noData, tc.noData)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestValueText(t *testing.T) {
	tests := []struct {
		name   string
		values []float64
		want   string
	}{
		{"Argo's format", []float64{10, 5.5}, "[10.000000,5.500000]"},
		{"one", []float64{0.25}, "[0.250000]"},
		{"infinities and NaN", []float64{math.Inf(1), math.Inf(-1), math.NaN()}, "[+Inf,-Inf,NaN]"},
		{"none", []float64{}, "[]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := valueText(tc.values); got != tc.want {
				t.Errorf("valueText = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	traceback := `<body><center><h2><p>Graphite encountered an unexpected error while handling your request.</p></h2>
<pre>
Traceback (most recent call last):
  File &quot;/usr/lib/python3/dist-packages/graphite/render/functions.py&quot;, line 1464, in scale
    series.name = &quot;scale(%s,%g)&quot; % (series.name,float(factor))
ValueError: could not convert string to float: &#x27;x&#x27;

</pre></center>`
	tests := []struct {
		name, body, want string
	}{
		{"plain text", "Invalid parameters (Received request for unknown function: nosuchfunc); targets: \"nosuchfunc(a)\"\n",
			`Invalid parameters (Received request for unknown function: nosuchfunc); targets: "nosuchfunc(a)"`},
		{"graphite-web's traceback page: the exception", traceback, "ValueError: could not convert string to float: 'x'"},
		{"HTML without traceback, on one line", "<html><body><h1>Bad Gateway</h1>\n<p>upstream  down</p></body></html>", "Bad Gateway upstream down"},
		{"long bodies trimmed", strings.Repeat("x", 400), strings.Repeat("x", maxMessage) + "…"},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := errorText([]byte(tc.body)); got != tc.want {
				t.Errorf("errorText = %q, want %q", got, tc.want)
			}
		})
	}
}
