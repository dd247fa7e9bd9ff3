package bench

import "testing"

func TestPubsubOmem(t *testing.T) {
	list := "id=3 addr=127.0.0.1:5000 laddr=127.0.0.1:6379 fd=8 name= age=2 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=26 qbuf-free=20448 argv-mem=10 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=22298 events=r cmd=client|list user=default redir=-1 resp=2\n" +
		"id=4 addr=127.0.0.1:5001 laddr=127.0.0.1:6379 fd=9 name= age=2 idle=0 flags=P db=0 sub=1001 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=12 omem=245760 tot-mem=267000 events=rw cmd=subscribe user=default redir=-1 resp=3\n" +
		"id=5 addr=127.0.0.1:5002 laddr=127.0.0.1:6379 fd=10 name= age=2 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=40 omem=900000 tot-mem=922000 events=r cmd=publish user=default redir=-1 resp=3\n"
	omem, oll, n := pubsubOmem(list)
	if omem != 245760 || oll != 12 || n != 1 {
		t.Fatalf("omem %d, oll %d, clients %d; want only the pub/sub client's 245760, 12, 1", omem, oll, n)
	}
	if omem, _, n := pubsubOmem(""); omem != 0 || n != 0 {
		t.Fatalf("empty list: %d, %d", omem, n)
	}
}
