/* Prometheus text exposition of the scraped VMs; see agent.h. Label
 * values are VM names (socket file names), device ids and KVM statistic
 * names: escaped anyway (backslash, quote, newline). */
#include "agent/agent.h"

#include <errno.h>

static void label(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void vm_gauge(FILE *f, const char *name, const struct agent_vm *vm, double v)
{
	fprintf(f, "%s{vm=\"", name);
	label(f, vm->name);
	fprintf(f, "\"} %.6g\n", v);
}

#define EACH_UP(vms, n, i) for (unsigned i = 0; i < (n); i++) if ((vms)[i].up)

int agent_prom_render(FILE *f, const struct agent_vm *vms, unsigned n,
		      const struct agent_admission *a, uint64_t scrapes, uint64_t scrape_errors)
{
	double host_demand = 0, host_usage = 0;

	head(f, "mote_vm_up", "gauge", "1 if the VM's GET /demand answered at the last scrape.");
	for (unsigned i = 0; i < n; i++)
		vm_gauge(f, "mote_vm_up", &vms[i], vms[i].up);
	head(f, "mote_vm_demand_cpus", "gauge",
	     "CPU demand over the moving window, Used/(Period-Ready) summed over vCPUs, in CPUs.");
	EACH_UP(vms, n, i) vm_gauge(f, "mote_vm_demand_cpus", &vms[i], vms[i].window.demand);
	head(f, "mote_vm_usage_cpus", "gauge", "CPU used over the moving window, Used/Period, in CPUs.");
	EACH_UP(vms, n, i) vm_gauge(f, "mote_vm_usage_cpus", &vms[i], vms[i].window.usage);
	head(f, "mote_vm_ready_cpus", "gauge",
	     "Time runnable but waiting for a host CPU, Ready/Period summed over vCPUs.");
	EACH_UP(vms, n, i) vm_gauge(f, "mote_vm_ready_cpus", &vms[i], vms[i].window.ready);
	head(f, "mote_vm_demand_ewma_cpus", "gauge", "EWMA of the per-interval demand, in CPUs.");
	EACH_UP(vms, n, i) vm_gauge(f, "mote_vm_demand_ewma_cpus", &vms[i], vms[i].ewma.demand);
	head(f, "mote_vm_usage_ewma_cpus", "gauge", "EWMA of the per-interval usage, in CPUs.");
	EACH_UP(vms, n, i) vm_gauge(f, "mote_vm_usage_ewma_cpus", &vms[i], vms[i].ewma.usage);
	head(f, "mote_vcpu_demand", "gauge", "Per-vCPU demand over the window (0..1).");
	EACH_UP(vms, n, i) for (unsigned c = 0; c < vms[i].nr_vcpus; c++) {
		fputs("mote_vcpu_demand{vm=\"", f);
		label(f, vms[i].name);
		fprintf(f, "\",vcpu=\"%u\"} %.6g\n", c, vms[i].vcpu[c].demand);
	}
	head(f, "mote_vcpu_usage", "gauge", "Per-vCPU usage over the window (0..1).");
	EACH_UP(vms, n, i) for (unsigned c = 0; c < vms[i].nr_vcpus; c++) {
		fputs("mote_vcpu_usage{vm=\"", f);
		label(f, vms[i].name);
		fprintf(f, "\",vcpu=\"%u\"} %.6g\n", c, vms[i].vcpu[c].usage);
	}
	head(f, "mote_vcpu_kvm_total", "counter",
	     "KVM's per-vCPU statistics: exits by reason, halts, halt wait time (ns).");
	EACH_UP(vms, n, i) for (unsigned c = 0; c < vms[i].nr_vcpus; c++)
		for (unsigned k = 0; k < vms[i].nr_exits[c]; k++) {
			fputs("mote_vcpu_kvm_total{vm=\"", f);
			label(f, vms[i].name);
			fprintf(f, "\",vcpu=\"%u\",stat=\"", c);
			label(f, vms[i].exits[c][k].name);
			fprintf(f, "\"} %llu\n", (unsigned long long)vms[i].exits[c][k].value);
		}
	head(f, "mote_vm_guest_memory_bytes", "gauge", "Guest RAM size.");
	EACH_UP(vms, n, i) vm_gauge(f, "mote_vm_guest_memory_bytes", &vms[i],
				    (double)vms[i].guest_bytes);
	head(f, "mote_vm_resident_bytes", "gauge", "Guest RAM backed by host memory.");
	EACH_UP(vms, n, i) if (vms[i].has_working_set)
		vm_gauge(f, "mote_vm_resident_bytes", &vms[i], (double)vms[i].resident_bytes);
	head(f, "mote_vm_working_set_bytes", "gauge",
	     "Guest RAM touched in the last working-set interval (sampled estimate).");
	EACH_UP(vms, n, i) if (vms[i].has_working_set)
		vm_gauge(f, "mote_vm_working_set_bytes", &vms[i], (double)vms[i].working_set_bytes);
	head(f, "mote_vm_io_ops_total", "counter", "I/O requests per device.");
	EACH_UP(vms, n, i) for (unsigned d = 0; d < vms[i].nr_io; d++) {
		fputs("mote_vm_io_ops_total{vm=\"", f);
		label(f, vms[i].name);
		fprintf(f, "\",device=\"%s\",id=\"", vms[i].io[d].device);
		label(f, vms[i].io[d].id);
		fprintf(f, "\"} %llu\n", (unsigned long long)vms[i].io[d].ops);
	}
	head(f, "mote_vm_io_bytes_total", "counter", "I/O bytes per device and direction.");
	EACH_UP(vms, n, i) for (unsigned d = 0; d < vms[i].nr_io; d++) {
		for (int dir = 0; dir < 2; dir++) {
			fputs("mote_vm_io_bytes_total{vm=\"", f);
			label(f, vms[i].name);
			fprintf(f, "\",device=\"%s\",id=\"", vms[i].io[d].device);
			label(f, vms[i].io[d].id);
			fprintf(f, "\",dir=\"%s\"} %llu\n", dir ? "write" : "read",
				(unsigned long long)(dir ? vms[i].io[d].write_bytes
							 : vms[i].io[d].read_bytes));
		}
	}
	head(f, "mote_vm_io_rate_limited_total", "counter",
	     "Times a device's rate limiter held its queue.");
	EACH_UP(vms, n, i) for (unsigned d = 0; d < vms[i].nr_io; d++) {
		fputs("mote_vm_io_rate_limited_total{vm=\"", f);
		label(f, vms[i].name);
		fprintf(f, "\",device=\"%s\",id=\"", vms[i].io[d].device);
		label(f, vms[i].io[d].id);
		fprintf(f, "\"} %llu\n", (unsigned long long)vms[i].io[d].rate_limited);
	}
	head(f, "mote_vm_io_throttled_seconds_total", "counter",
	     "Time a device's queues waited on its rate limiter (token buckets).");
	EACH_UP(vms, n, i) for (unsigned d = 0; d < vms[i].nr_io; d++) {
		fputs("mote_vm_io_throttled_seconds_total{vm=\"", f);
		label(f, vms[i].name);
		fprintf(f, "\",device=\"%s\",id=\"", vms[i].io[d].device);
		label(f, vms[i].io[d].id);
		fprintf(f, "\"} %.9g\n", (double)vms[i].io[d].throttled_ns / 1e9);
	}
	head(f, "mote_vm_cpu_shares", "gauge",
	     "CPU share the agent set (cgroup v1 cpu.shares or v2 cpu.weight); 0: none.");
	for (unsigned i = 0; i < n; i++)
		vm_gauge(f, "mote_vm_cpu_shares", &vms[i], vms[i].shares);
	head(f, "mote_vm_cpu_cap_cpus", "gauge", "CPU cap the agent set, in CPUs; 0: none.");
	for (unsigned i = 0; i < n; i++)
		vm_gauge(f, "mote_vm_cpu_cap_cpus", &vms[i],
			 vms[i].quota_us > 0 && vms[i].period_us > 0
				 ? (double)vms[i].quota_us / (double)vms[i].period_us
				 : 0);
	EACH_UP(vms, n, i) {
		host_demand += vms[i].window.demand;
		host_usage += vms[i].window.usage;
	}
	head(f, "mote_host_demand_cpus", "gauge", "Summed demand of the VMs, in CPUs.");
	fprintf(f, "mote_host_demand_cpus %.6g\n", host_demand);
	head(f, "mote_host_usage_cpus", "gauge", "Summed usage of the VMs, in CPUs.");
	fprintf(f, "mote_host_usage_cpus %.6g\n", host_usage);
	head(f, "mote_host_capacity_cpus", "gauge", "CPUs the VMs may use (admission).");
	fprintf(f, "mote_host_capacity_cpus %.6g\n", a->capacity_cpus);
	head(f, "mote_host_demand_limit_cpus", "gauge", "Capacity x overcommit target.");
	fprintf(f, "mote_host_demand_limit_cpus %.6g\n", a->capacity_cpus * a->overcommit);
	head(f, "mote_agent_scrapes_total", "counter", "VM scrapes attempted.");
	fprintf(f, "mote_agent_scrapes_total %llu\n", (unsigned long long)scrapes);
	head(f, "mote_agent_scrape_errors_total", "counter", "VM scrapes that failed.");
	fprintf(f, "mote_agent_scrape_errors_total %llu\n", (unsigned long long)scrape_errors);
	return ferror(f) ? -EIO : 0;
}
