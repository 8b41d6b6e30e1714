package events

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"time"
)

// NATS identities, one per Sluice service and two for people and bots.
// docs/security.md explains each; deploy/nats/permissions.conf gives each a
// NATS user with the permissions assembly.PermissionsOf (internal/assembly)
// derives from the services' Needs.
const (
	IdentityOrchestrator = "orchestrator"
	IdentityAnalyzer     = "analyzer"
	IdentityReplicas     = "replicas"
	IdentityTraffic      = "traffic"
	// IdentityKube is the replicas service on Kubernetes with its Rollout
	// controllers (--watch-rollouts): the replicas identity, plus publishing
	// the requested and template events of Rollout objects (commands) and
	// the kube-status consumer that writes status back. Whoever may edit a
	// Rollout in the cluster may start a rollout already; this identity
	// carries that right onto the bus.
	IdentityKube = "kube"
	// IdentityGateway is the HTTP edge (sluice-gateway): it publishes the
	// commands of the callers it authorized, answers a refused one itself
	// with a command.refused status event, and reads the status and
	// commands streams and the state buckets it shows; it runs no durable
	// consumer and writes no bucket.
	IdentityGateway = "gateway"
	// IdentityNotifier is the notifier (sluice-notifier): it consumes the
	// status stream with its durable consumers, queues and delivers
	// notifications as tasks on sluice.task.notifier.>, keeps its state in
	// its own bucket, reads the rollouts bucket, and publishes the chat
	// commands of the people it authorized (and their Forbidden refusals).
	IdentityNotifier = "notifier"
	// IdentityOperator is the CLI (`sluice apply`, `promote`, `abort`, ...)
	// and any CI job or bot allowed to change rollouts.
	IdentityOperator = "operator"
	// IdentityViewer only reads: status events (`sluice list`, `tail`, a
	// chatops bot that renders status and never answers) and, for
	// `sluice get` and `history`, the commands stream.
	IdentityViewer = "viewer"
)

// Identities lists every identity, in the order the docs use.
var Identities = []string{
	IdentityOrchestrator, IdentityAnalyzer, IdentityReplicas, IdentityTraffic,
	IdentityKube, IdentityGateway, IdentityNotifier, IdentityOperator, IdentityViewer,
}

// Needs is what one service (or one part of it: a worker, a backend, a
// router) uses on the bus beyond the streams every service provisions. Each
// declares its own (orchestrator.Needs, worker.Needs, local.Needs, ...);
// the service runtime (internal/daemon) provisions the buckets it owns, and
// ServicePermissions grants exactly these rights, so a name exists once.
type Needs struct {
	// Consumers are the durable consumers it runs.
	Consumers []Durable
	// Buckets are the key-value buckets it owns: it provisions and writes
	// them.
	Buckets []Bucket
	// Reads are buckets of others it only reads; it may provision them
	// (create or update), so it can start before their owner.
	Reads []string
	// Views are buckets of others it reads once their owner made them: it
	// may neither provision nor write them.
	Views []string
	// Follows are streams it reads with ephemeral ordered consumers
	// (history, a stream of status events, a command's answer). The
	// durable consumers of every service on them are denied to it.
	Follows []string
	// Publish are the subjects it publishes (NATS wildcards allowed),
	// besides the dead letters of its consumers.
	Publish []string
	// UpdateStreams: it owns the bus settings (--bus-*) and may update the
	// streams; every other service may only create them.
	UpdateStreams bool
	// Streams are internal streams it alone provisions and reads, with
	// durable consumers of any name (the orchestrator's partitions,
	// SLUICE_ORCHESTRATOR, sourced from the public streams).
	Streams []string
	// Retires are durable consumers it deletes once it no longer needs
	// them (the orchestrator's shared consumers, when it runs partitions).
	Retires []Durable
}

// Durable is a durable consumer on a stream.
type Durable struct {
	Stream, Name string
}

// Bucket is a key-value bucket a service owns.
type Bucket struct {
	Name, Description string
	// History is how many revisions of a key are kept.
	History uint8
	// TTL, when not zero, is how long an entry is kept after its last
	// write.
	TTL time.Duration
	// Public buckets are also readable by the operator and the viewer
	// (the orchestrator's rollout records, which `sluice get` reads).
	Public bool
}

// Merge returns n with the needs of others added.
func (n Needs) Merge(others ...Needs) Needs {
	for _, o := range others {
		n.Consumers = append(slices.Clip(n.Consumers), o.Consumers...)
		n.Buckets = append(slices.Clip(n.Buckets), o.Buckets...)
		n.Reads = append(slices.Clip(n.Reads), o.Reads...)
		n.Views = append(slices.Clip(n.Views), o.Views...)
		n.Follows = append(slices.Clip(n.Follows), o.Follows...)
		n.Publish = append(slices.Clip(n.Publish), o.Publish...)
		n.UpdateStreams = n.UpdateStreams || o.UpdateStreams
		n.Streams = append(slices.Clip(n.Streams), o.Streams...)
		n.Retires = append(slices.Clip(n.Retires), o.Retires...)
	}
	return n
}

// Permissions is what one NATS user may do: the subjects it may publish to
// and subscribe to, NATS wildcards allowed; everything else is denied.
// DenyPublish carves exceptions out of Publish (the server applies deny
// after allow). The lists are sorted and free of duplicates.
type Permissions struct {
	Publish     []string
	DenyPublish []string
	Subscribe   []string
}

// InboxPrefixOf is the inbox prefix of identity: where its JetStream API
// responses, pull-consumer deliveries and key-value watch updates arrive
// (ConnConfig.InboxPrefix, --nats-inbox-prefix). Each identity may
// subscribe only to its own inboxes, so no user can read another's replies.
func InboxPrefixOf(identity string) string { return "_INBOX_" + identity }

// ServicePermissions returns the NATS permissions of a Sluice service that
// connects as identity and needs n: the least it needs with Sluice's
// streams and buckets already provisioned or provisioned by it:
//
//   - Every service may create (never update, purge or delete) the five
//     SLUICE_* streams, so the services can start in any order on an empty
//     server. Only a service with n.UpdateStreams (the orchestrator) may
//     update them: it owns the bus settings (--bus-*), and a service
//     started with other settings fails at start-up instead of changing
//     the streams.
//   - A service may create and update the key-value buckets it owns
//     (jetstream's CreateOrUpdateKeyValue always sends an update), and
//     write only those.
//   - Each publishes only the subjects it produces (n.Publish) and the
//     dead letters of its own consumers.
//   - It reads the streams it follows (n.Follows) with ephemeral
//     consumers, and the durable consumers that services (the needs of
//     every service) and bots run on them are denied to it.
func ServicePermissions(identity string, n Needs, bots []Bot, services ...Needs) Permissions {
	b := &permBuilder{identity: identity}
	b.service()
	if n.UpdateStreams {
		b.pub(jsAPI("STREAM.UPDATE", sluiceStreams()...)...)
	}
	for _, c := range n.Consumers {
		b.consumer(c.Stream, c.Name)
	}
	for _, st := range n.Streams {
		b.pub(jsAPI("STREAM.INFO", st)[0], jsAPI("STREAM.CREATE", st)[0], jsAPI("STREAM.UPDATE", st)[0],
			"$JS.API.CONSUMER.CREATE."+st+".*.>", // a durable with one filter subject
			"$JS.API.CONSUMER.UNPIN."+st+".*")    // hand a pinned consumer to another replica
		b.consumer(st, "*")
	}
	for _, c := range n.Retires {
		b.pub("$JS.API.CONSUMER.DELETE." + c.Stream + "." + c.Name)
	}
	for _, k := range n.Buckets {
		b.bucket(k.Name, true)
	}
	for _, k := range n.Reads {
		b.bucket(k, false)
	}
	for _, k := range n.Views {
		b.readBucket(k)
	}
	for _, s := range n.Follows {
		// Its own durables on a stream it also follows (the notifier's on
		// the status stream) stay its own: only the others' are denied.
		others := slices.DeleteFunc(durablesOn(s, services), func(d string) bool {
			return slices.Contains(n.Consumers, Durable{Stream: s, Name: d})
		})
		if s == StreamStatus {
			others = append(others, botDurables(bots, "")...)
		}
		b.reader(s, false, others...)
	}
	b.pub(n.Publish...)
	return b.done()
}

// OperatorPermissions returns the permissions of IdentityOperator: the CLI
// (`sluice apply`, `promote`, `abort`, ...) and any CI job or bot allowed to
// change rollouts. It reads the status and commands streams and publishes
// commands; the services' durable consumers (services, the needs of every
// service) and the bots' (bots) are denied to it.
func OperatorPermissions(bots []Bot, services ...Needs) Permissions {
	b := &permBuilder{identity: IdentityOperator}
	b.client()
	b.publicBuckets(services)
	b.reader(StreamStatus, true, append(durablesOn(StreamStatus, services), botDurables(bots, "")...)...)
	b.reader(StreamCommands, false, durablesOn(StreamCommands, services)...)
	b.pub(CommandRoot + ".>")
	return b.done()
}

// ViewerPermissions returns the permissions of IdentityViewer, who only
// reads: status events (`sluice list`, `tail`, a chatops bot that renders
// status and never answers) and, for `sluice get` and `history`, the
// commands stream, whose durable consumers of services are denied to it,
// as are the bots' (bots) on the status stream.
func ViewerPermissions(bots []Bot, services ...Needs) Permissions {
	b := &permBuilder{identity: IdentityViewer}
	b.client()
	b.publicBuckets(services)
	b.reader(StreamStatus, true, append(durablesOn(StreamStatus, services), botDurables(bots, "")...)...)
	b.reader(StreamCommands, false, durablesOn(StreamCommands, services)...)
	// A bot on events.Client.Consume with its own durable consumer
	// dead-letters what it cannot handle.
	b.pub(DeadLetterRoot + "." + StreamStatus + ".>")
	b.sub("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + StreamStatus + ".>")
	return b.done()
}

// Bot is a client with a NATS user of its own (a chatops bot, a
// dashboard, a CI job that follows rollouts): its user is its Name, and
// the durable consumer named Name on the status stream is its alone. The
// operator, the viewer and every other bot may neither create, read,
// pull from nor delete it, so one bot cannot take, delay or remove
// another's events, which two bots sharing the viewer's user could.
type Bot struct {
	// Name is the bot's NATS user, its inbox prefix's suffix and the name
	// of its durable consumer on SLUICE_STATUS.
	Name string
	// Answers lets it publish commands (promote, abort, ...) as the
	// operator does; without it, it only reads, as the viewer does.
	Answers bool
}

var botName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// Validate checks that b's name can be a NATS user and a consumer name
// and clashes with no identity.
func (b Bot) Validate() error {
	if !botName.MatchString(b.Name) {
		return fmt.Errorf("bot name %q: want lower-case letters, digits and '-', starting with a letter, at most 63 characters", b.Name)
	}
	if slices.Contains(Identities, b.Name) {
		return fmt.Errorf("bot name %q is the name of a Sluice identity; choose another", b.Name)
	}
	return nil
}

// BotPermissions returns the permissions of bot: the viewer's reading (or,
// when it answers, the operator's), with its own inbox, and the durable
// consumer bot.Name on the status stream to create, pull from, settle,
// dead-letter from and delete. The services' durables and the other bots'
// (bots may include bot itself) are denied to it.
func BotPermissions(bot Bot, bots []Bot, services ...Needs) Permissions {
	b := &permBuilder{identity: bot.Name}
	b.client()
	b.publicBuckets(services)
	protect := append(durablesOn(StreamStatus, services), botDurables(bots, bot.Name)...)
	b.reader(StreamStatus, false, protect...)
	b.consumer(StreamStatus, bot.Name)
	b.pub("$JS.API.CONSUMER.DELETE." + StreamStatus + "." + bot.Name)
	b.reader(StreamCommands, false, durablesOn(StreamCommands, services)...)
	if bot.Answers {
		b.pub(CommandRoot + ".>")
	}
	return b.done()
}

// botDurables are the names of the bots' durables, but for except's.
func botDurables(bots []Bot, except string) []string {
	var out []string
	for _, b := range bots {
		if b.Name != except {
			out = append(out, b.Name)
		}
	}
	return out
}

// durablesOn returns the names of the durable consumers on stream that
// needs declare.
func durablesOn(stream string, needs []Needs) []string {
	var out []string
	for _, n := range needs {
		for _, c := range n.Consumers {
			if c.Stream == stream {
				out = append(out, c.Name)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func sluiceStreams() []string {
	return []string{StreamCommands, StreamStatus, StreamTasks, StreamResults, StreamDeadLetter}
}

// jsAPI returns $JS.API.<op>.<name> for each name.
func jsAPI(op string, names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "$JS.API." + op + "." + n
	}
	return out
}

type permBuilder struct {
	identity string
	p        Permissions
}

func (b *permBuilder) pub(s ...string) { b.p.Publish = append(b.p.Publish, s...) }
func (b *permBuilder) sub(s ...string) { b.p.Subscribe = append(b.p.Subscribe, s...) }

func (b *permBuilder) deny(s ...string) { b.p.DenyPublish = append(b.p.DenyPublish, s...) }

// client is what every Connect does: account info, and replies.
func (b *permBuilder) client() {
	b.pub("$JS.API.INFO")
	b.sub(InboxPrefixOf(b.identity) + ".>")
}

// service is what every service does at start-up: events.Client.Provision
// of the five streams (look up, create when missing).
func (b *permBuilder) service() {
	b.client()
	b.pub(jsAPI("STREAM.INFO", sluiceStreams()...)...)
	b.pub(jsAPI("STREAM.CREATE", sluiceStreams()...)...)
}

// consumer is one durable pull consumer run by events.Client.Consume: create
// or update it, pull, settle (ack, nak, in progress, term), hear the
// server's max-deliveries advisory and dead-letter from the stream.
func (b *permBuilder) consumer(stream, durable string) {
	b.pub(
		"$JS.API.CONSUMER.CREATE."+stream+"."+durable,
		"$JS.API.CONSUMER.INFO."+stream+"."+durable,
		"$JS.API.CONSUMER.MSG.NEXT."+stream+"."+durable,
		"$JS.ACK."+stream+"."+durable+".>",
		"$JS.API.STREAM.MSG.GET."+stream,
		DeadLetterRoot+"."+stream+"."+durable,
	)
	b.sub("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + stream + "." + durable)
}

// bucket is one key-value bucket: provision it (CreateOrUpdateKeyValue),
// get (direct get), list and watch (ordered consumers with flow control),
// and, when write, put, update, create and delete its keys.
func (b *permBuilder) bucket(name string, write bool) {
	s := "KV_" + name
	b.pub("$JS.API.STREAM.CREATE."+s, "$JS.API.STREAM.UPDATE."+s)
	b.readBucket(name)
	if write {
		b.pub("$KV." + name + ".>")
	}
}

// readBucket is reading one key-value bucket: get (direct get), list and
// watch (ordered consumers with flow control).
func (b *permBuilder) readBucket(name string) {
	s := "KV_" + name
	b.pub(
		"$JS.API.STREAM.INFO."+s,
		"$JS.API.STREAM.MSG.GET."+s,
		"$JS.API.DIRECT.GET."+s,
		"$JS.API.DIRECT.GET."+s+".>",
		"$JS.API.CONSUMER.CREATE."+s,
		"$JS.API.CONSUMER.CREATE."+s+".>",
		"$JS.API.CONSUMER.INFO."+s+".>",
		"$JS.API.CONSUMER.MSG.NEXT."+s+".>",
		"$JS.API.CONSUMER.DELETE."+s+".>",
		"$JS.FC."+s+".>",
	)
}

// publicBuckets lets the identity read (get, list keys, watch) every
// bucket services declare Public, and change nothing in it.
func (b *permBuilder) publicBuckets(services []Needs) {
	for _, n := range services {
		for _, bk := range n.Buckets {
			if bk.Public {
				b.readBucket(bk.Name)
			}
		}
	}
}

// reader reads a stream with ephemeral ordered consumers (history, get,
// tail, apply --wait; their names are random, so the rights cover any
// consumer name) and reads single messages (a rollout's last status). With
// ack it may also run a durable consumer of its own (a bot). The services'
// durables on the stream are denied: a reader must not pull (and so delay
// or dead-letter) their messages, reconfigure or delete them.
func (b *permBuilder) reader(stream string, ack bool, protect ...string) {
	b.pub(
		"$JS.API.STREAM.INFO."+stream,
		"$JS.API.STREAM.MSG.GET."+stream,
		"$JS.API.DIRECT.GET."+stream,
		"$JS.API.DIRECT.GET."+stream+".>",
		"$JS.API.CONSUMER.CREATE."+stream+".>",
		"$JS.API.CONSUMER.INFO."+stream+".>",
		"$JS.API.CONSUMER.MSG.NEXT."+stream+".>",
		"$JS.API.CONSUMER.DELETE."+stream+".>",
	)
	if ack {
		b.pub("$JS.ACK." + stream + ".>")
	}
	for _, d := range protect {
		b.deny(
			"$JS.API.CONSUMER.*."+stream+"."+d,
			"$JS.API.CONSUMER.*."+stream+"."+d+".>",
			"$JS.API.CONSUMER.MSG.NEXT."+stream+"."+d,
		)
		if ack {
			b.deny("$JS.ACK." + stream + "." + d + ".>")
		}
	}
}

func (b *permBuilder) done() Permissions {
	for _, l := range [][]string{b.p.Publish, b.p.DenyPublish, b.p.Subscribe} {
		sort.Strings(l)
	}
	return Permissions{
		Publish:     slices.Compact(b.p.Publish),
		DenyPublish: slices.Compact(b.p.DenyPublish),
		Subscribe:   slices.Compact(b.p.Subscribe),
	}
}
