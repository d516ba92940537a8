/**
 * Debian's nginx as an unprivileged test peer: everything it writes (temp files, pid, error log)
 * goes under one test directory, and it runs in the foreground so the test owns the process.
 */
export function nginxConfig(o: {
  dir: string;
  /** "master_process off;" (one process) or "worker_processes 1;" (a master, for -s reload). */
  processModel: string;
  workerConnections: number;
  /** The `server { … }` block(s). */
  servers: string;
}): string {
  return `daemon off;
${o.processModel}
pid ${o.dir}/nginx.pid;
error_log ${o.dir}/error.log info;
events { worker_connections ${o.workerConnections}; }
http {
  access_log off;
  client_body_temp_path ${o.dir}/body;
  proxy_temp_path ${o.dir}/proxy;
  fastcgi_temp_path ${o.dir}/fastcgi;
  uwsgi_temp_path ${o.dir}/uwsgi;
  scgi_temp_path ${o.dir}/scgi;
${o.servers}
}
`;
}
