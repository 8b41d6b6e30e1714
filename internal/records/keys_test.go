package records

import (
	"testing"

	"github.com/sluicehq/sluice/pkg/events"
)

func TestRefOf(t *testing.T) {
	for _, c := range []struct {
		key     string
		want    events.Ref
		wantErr bool
	}{
		{key: KeyOf(events.Ref{Namespace: "prod", Name: "web"}), want: events.Ref{Namespace: "prod", Name: "web"}},
		{key: "nodot", wantErr: true},
		{key: "prod.Web_1", wantErr: true},
	} {
		got, err := RefOf(c.key)
		if (err != nil) != c.wantErr || (!c.wantErr && got != c.want) {
			t.Errorf("RefOf(%q) = %v, %v; want %v, error %v", c.key, got, err, c.want, c.wantErr)
		}
	}
}
