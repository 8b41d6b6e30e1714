package promserver

import (
	stdjson "encoding/json"
	"fmt"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/util/jsonutil"
)

// The encoders below write what Prometheus' JSON codec
// (web/api/v1/json_codec.go) writes, byte for byte: that package would
// bring in its whole web stack. Sample timestamps are seconds with
// milliseconds (1700000000.500), sample values are strings ("NaN", "+Inf"
// included), an empty result is [] rather than null, label names and
// values are not HTML-escaped, other strings (label name lists, warnings,
// errors) are.

// json is Prometheus' API configuration: standard-library compatible,
// HTML-escaping strings.
var json = jsoniter.ConfigCompatibleWithStandardLibrary

// writeValue writes a query result as {"resultType":..,"result":..}.
func writeValue(s *jsoniter.Stream, v parser.Value) error {
	s.WriteObjectStart()
	s.WriteObjectField("resultType")
	s.WriteString(string(v.Type()))
	s.WriteMore()
	s.WriteObjectField("result")
	switch v := v.(type) {
	case promql.Vector:
		s.WriteArrayStart()
		for i, sample := range v {
			if i > 0 {
				s.WriteMore()
			}
			writeSample(s, sample)
		}
		s.WriteArrayEnd()
	case promql.Matrix:
		s.WriteArrayStart()
		for i, series := range v {
			if i > 0 {
				s.WriteMore()
			}
			writeSeries(s, series)
		}
		s.WriteArrayEnd()
	case promql.Scalar, promql.String:
		// Prometheus has no encoder of its own for these: their
		// MarshalJSON (encoding/json) writes them.
		b, err := v.(stdjson.Marshaler).MarshalJSON()
		if err != nil {
			return err
		}
		s.Write(b)
	default:
		return fmt.Errorf("unexpected result type %T", v)
	}
	s.WriteObjectEnd()
	return nil
}

// writeSample writes {"metric":{..},"value":[t,"v"]}, or "histogram"
// instead of "value" for a native histogram sample.
func writeSample(s *jsoniter.Stream, sample promql.Sample) {
	s.WriteObjectStart()
	s.WriteObjectField("metric")
	writeLabels(s, sample.Metric)
	s.WriteMore()
	if sample.H == nil {
		s.WriteObjectField("value")
	} else {
		s.WriteObjectField("histogram")
	}
	s.WriteArrayStart()
	jsonutil.MarshalTimestamp(sample.T, s)
	s.WriteMore()
	if sample.H == nil {
		jsonutil.MarshalFloat(sample.F, s)
	} else {
		jsonutil.MarshalHistogram(sample.H, s)
	}
	s.WriteArrayEnd()
	s.WriteObjectEnd()
}

// writeSeries writes {"metric":{..},"values":[..],"histograms":[..]},
// leaving out an empty values or histograms.
func writeSeries(s *jsoniter.Stream, series promql.Series) {
	s.WriteObjectStart()
	s.WriteObjectField("metric")
	writeLabels(s, series.Metric)
	if len(series.Floats) > 0 {
		s.WriteMore()
		s.WriteObjectField("values")
		s.WriteArrayStart()
		for i, p := range series.Floats {
			if i > 0 {
				s.WriteMore()
			}
			s.WriteArrayStart()
			jsonutil.MarshalTimestamp(p.T, s)
			s.WriteMore()
			jsonutil.MarshalFloat(p.F, s)
			s.WriteArrayEnd()
		}
		s.WriteArrayEnd()
	}
	if len(series.Histograms) > 0 {
		s.WriteMore()
		s.WriteObjectField("histograms")
		s.WriteArrayStart()
		for i, p := range series.Histograms {
			if i > 0 {
				s.WriteMore()
			}
			s.WriteArrayStart()
			jsonutil.MarshalTimestamp(p.T, s)
			s.WriteMore()
			jsonutil.MarshalHistogram(p.H, s)
			s.WriteArrayEnd()
		}
		s.WriteArrayEnd()
	}
	s.WriteObjectEnd()
}

// writeLabels writes {"name":"value",..} in label order.
func writeLabels(s *jsoniter.Stream, ls labels.Labels) {
	s.WriteObjectStart()
	i := 0
	ls.Range(func(l labels.Label) {
		if i > 0 {
			s.WriteMore()
		}
		i++
		s.WriteObjectField(l.Name)
		s.WriteString(l.Value)
	})
	s.WriteObjectEnd()
}

// writeLabelSets writes [{..},{..}], the data of /api/v1/series.
func writeLabelSets(s *jsoniter.Stream, sets []labels.Labels) {
	s.WriteArrayStart()
	for i, ls := range sets {
		if i > 0 {
			s.WriteMore()
		}
		writeLabels(s, ls)
	}
	s.WriteArrayEnd()
}

// writeStrings writes ["a","b"], [] when empty.
func writeStrings(s *jsoniter.Stream, values []string) {
	s.WriteArrayStart()
	for i, v := range values {
		if i > 0 {
			s.WriteMore()
		}
		s.WriteStringWithHTMLEscaped(v)
	}
	s.WriteArrayEnd()
}
