/* See cpudemand.h. */
#include "launcher/cpudemand.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int schedstat_parse(const char *buf, uint64_t *run_ns, uint64_t *ready_ns)
{
	char *end;
	unsigned long long a, b;

	errno = 0;
	a = strtoull(buf, &end, 10);
	if (errno || end == buf || *end != ' ')
		return -EINVAL;
	buf = end + 1;
	b = strtoull(buf, &end, 10);
	if (errno || end == buf || (*end != ' ' && *end != '\n' && *end != '\0'))
		return -EINVAL;
	*run_ns = a;
	*ready_ns = b;
	return 0;
}

int cpu_demand_feed(struct cpu_demand *d, const struct demand_counters *cur, double alpha)
{
	double sum = 0;
	int ret = 0;

	if (!d->have_prev) {
		memcpy(d->prev, cur, d->nr_tids * sizeof(*cur));
		d->have_prev = true;
		return -EAGAIN;
	}
	for (unsigned i = 0; i < d->nr_tids && !ret; i++) {
		struct demand_interval iv;
		int r = demand_interval_between(&d->prev[i], &cur[i], &iv);

		if (r)
			ret = r; /* -EAGAIN: no time passed; -ERANGE: a new thread */
		else
			sum += demand_ratios_of(&iv).demand;
	}
	if (ret == -EAGAIN)
		return ret; /* keep the older baseline */
	memcpy(d->prev, cur, d->nr_tids * sizeof(*cur));
	if (ret)
		return ret;
	d->cpus = d->primed ? alpha * sum + (1 - alpha) * d->cpus : sum;
	d->primed = true;
	return 0;
}

static int read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

int cpu_demand_find_vcpus(struct cpu_demand *d, pid_t pid)
{
	char path[64], comm[32];
	struct dirent *e;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	if (!dir)
		return -errno;
	d->nr_tids = 0;
	while ((e = readdir(dir)) && d->nr_tids < CPUD_MAX_VCPUS) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.16s/comm", (int)pid, e->d_name);
		if (read_small(path, comm, sizeof(comm)) == 0 && !strncmp(comm, "mote-vcpu", 9))
			d->tid[d->nr_tids++] = (pid_t)atoi(e->d_name);
	}
	closedir(dir);
	d->have_prev = false;
	d->no_tids = d->nr_tids == 0;
	return d->nr_tids ? 0 : -ENOENT;
}

int cpu_demand_read(const struct cpu_demand *d, pid_t pid, struct demand_counters *cur)
{
	char path[64], buf[128];
	struct timespec ts;

	for (unsigned i = 0; i < d->nr_tids; i++) {
		int ret;

		snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", (int)pid, (int)d->tid[i]);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if ((ret = read_small(path, buf, sizeof(buf))))
			return ret;
		memset(&cur[i], 0, sizeof(cur[i]));
		cur[i].t_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
		if ((ret = schedstat_parse(buf, &cur[i].run_ns, &cur[i].ready_ns)))
			return ret;
	}
	return 0;
}
