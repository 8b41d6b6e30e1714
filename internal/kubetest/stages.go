package kubetest

import (
	"embed"
	"os"
	"path/filepath"
)

// Stage labels and annotations of the tier's own kwok Stages (stages/):
// a Job's pod labelled LabelFail "true" fails, its containers ending with
// the exit code of AnnotationExitCode (default 1) and the termination
// message of AnnotationMessage; every other Job pod succeeds (kwok's
// pod-complete stage). A pod labelled LabelImagePullError "true" stays
// Pending, its containers waiting in ErrImagePull.
const (
	LabelFail           = "kubetest.sluice.io/fail"
	LabelImagePullError = "kubetest.sluice.io/image-pull-error"
	AnnotationExitCode  = "kubetest.sluice.io/exit-code"
	AnnotationMessage   = "kubetest.sluice.io/message"
)

//go:embed stages/*.yaml
var ownStages embed.FS

// writeStages writes the tier's own Stage files into dir and returns
// their paths. They live in the source, not in the tools cache, so that
// adding one does not rebuild the tools.
func writeStages(dir string) ([]string, error) {
	entries, err := ownStages.ReadDir("stages")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, e := range entries {
		data, err := ownStages.ReadFile("stages/" + e.Name())
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, e.Name())
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}
