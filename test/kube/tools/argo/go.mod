module github.com/sluicehq/sluice/test/kube/tools/argo

go 1.26.0

require (
	github.com/argoproj/argo-cd/v3 v3.5.8
	github.com/argoproj/argo-rollouts v1.10.0
)
